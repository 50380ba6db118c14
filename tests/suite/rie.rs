//! Every function as it deploys: its arm64 release bootstrap (what `sam build` ships), run
//! under the Lambda Runtime Interface Emulator that the SAM CLI ships, through Debian's
//! qemu-user, with the environment `sam local invoke <Function> --env-vars
//! events/env-vars.json` gives it: template.yaml's Globals and the function's own
//! Environment, intrinsics resolved as SAM resolves them locally, then the env-vars file
//! (which overrides only variables the template declares). Each sample event of events/
//! is posted to it and must get the answer events_replay.rs expects of the handler.
//!
//! The AWS resources it reaches are moto's: the test points the SDK there
//! (`AWS_ENDPOINT_URL`) and names moto's table, queue and bucket, as a user points a copy of
//! the env-vars file at a deployed stack. No Docker: the emulator runs the bootstrap as a
//! child process. `.ci/test` builds the bootstraps and then runs this (it is `#[ignore]`d
//! for a plain `cargo test`, which has not built them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::Value as Yaml;
use storefront::jobs::outbox;
use storefront::jobs::worker::Job;
use storefront::store::Table as _;

use crate::events_replay::{expected, sample_events, Expect, ENV_VARS_FILE};
use crate::helpers;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `cargo lambda build --release --arm64` put the bootstraps.
fn bootstraps() -> PathBuf {
    match std::env::var_os("STOREFRONT_BOOTSTRAPS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo().join("target"), PathBuf::from);
            target.join("lambda")
        }
    }
}

/// The emulator the SAM CLI ships, in the venv .ci/setup makes.
fn emulator() -> PathBuf {
    if let Some(path) = std::env::var_os("STOREFRONT_RIE") {
        return PathBuf::from(path);
    }
    let venv =
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/storefront/venv/lib");
    let python = std::fs::read_dir(&venv)
        .ok()
        .and_then(|mut entries| entries.find_map(|e| e.ok()))
        .map(|e| e.path())
        .expect("the venv .ci/setup makes");
    python.join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
}

/// A template value as `sam local` resolves it for an environment variable: a parameter's
/// default (an SSM-typed parameter's default is the parameter's *name*: SAM does not read
/// SSM), a resource's logical id, a plain string as it is.
fn resolve(value: &Yaml, parameters: &Yaml) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str().unwrap_or_default();
            match &parameters[name]["Default"] {
                Yaml::Null => name.to_owned(),
                default => resolve(default, parameters),
            }
        }
        // A resource's attribute (the CloudFront domain in STOREFRONT_IMAGES_URL) is not
        // known locally: SAM leaves such an intrinsic unresolved and sets the variable to
        // "" (samcli/local/lambdafn/env_vars.py, `_stringify_value`).
        Yaml::Tagged(tagged) if tagged.tag == "Sub" || tagged.tag == "GetAtt" => String::new(),
        other => panic!("an environment value sam local cannot resolve: {other:?}"),
    }
}

/// The environment `sam local invoke <logical id> --env-vars events/env-vars.json` gives.
fn sam_local_environment(template: &Yaml, logical_id: &str) -> BTreeMap<String, String> {
    let parameters = &template["Parameters"];
    let mut environment = BTreeMap::new();
    for variables in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &template["Resources"][logical_id]["Properties"]["Environment"]["Variables"],
    ] {
        for (name, value) in variables.as_mapping().into_iter().flatten() {
            environment.insert(
                name.as_str().expect("name").to_owned(),
                resolve(value, parameters),
            );
        }
    }
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("events").join(ENV_VARS_FILE)).expect("env vars"),
    )
    .expect("env-vars JSON");
    for section in ["Parameters", logical_id] {
        for (name, value) in file[section].as_object().into_iter().flatten() {
            // SAM overrides only what the template declares for the function.
            if let Some(slot) = environment.get_mut(name) {
                *slot = value.as_str().expect("a string value").to_owned();
            }
        }
    }
    environment
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The emulator's process, killed when dropped: a test that fails half-way leaves none
/// behind to hold its ports.
struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Posts `event` to `bootstrap` run under the emulator with `environment`, and returns the
/// function's answer and what the process wrote.
fn invoke(
    bootstrap: &Path,
    environment: &BTreeMap<String, String>,
    event: &str,
) -> (serde_json::Value, String) {
    // Both of the emulator's ports are chosen here: its own Runtime API defaults to a fixed
    // one (9001) that anything else may hold.
    let (port, runtime_api) = (free_port(), free_port());
    let log = tempfile::NamedTempFile::new().expect("log file");
    let emulator = Emulator(
        Command::new(emulator())
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime_api}"))
            .args(["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"])
            .arg(bootstrap)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(environment)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the emulator {}: {e}", emulator().display())),
    );
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/function/invocations");
    let deadline = Instant::now() + Duration::from_secs(120);
    let answer = loop {
        match post_blocking(&url, event) {
            Ok(answer) => break Ok(answer),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => break Err(e),
        }
    };
    drop(emulator);
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    let answer =
        answer.unwrap_or_else(|e| panic!("no answer from {}: {e}\n{output}", bootstrap.display()));
    let value = serde_json::from_str(&answer).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {answer}\n{output}",
            bootstrap.display()
        )
    });
    (value, output)
}

/// A blocking POST with a long read timeout (the first invocation includes the init).
fn post_blocking(url: &str, body: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = &url[url.find("/2015").unwrap_or(0)..];
    let mut stream = std::net::TcpStream::connect(&address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    // Any answer is the function's (an init failure too): only no answer is retried.
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(_, body)| body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the arm64 release bootstraps, qemu-user and the SAM CLI's emulator: .ci/test builds and runs it"]
async fn every_deployed_bootstrap_answers_its_sample_event_under_the_lambda_emulator() {
    let template: Yaml = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("template.yaml")).expect("template"),
    )
    .expect("template YAML");
    let sdk = helpers::moto_sdk().await;
    let table = helpers::unique("rie");
    storefront::store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (queue_url, _) =
        storefront::queue::sqs::create_queue_with_dlq(&sqs, &helpers::unique("rie"), 5, 60)
            .await
            .expect("queue");
    let bucket = helpers::unique("rie");
    storefront::blobs::s3::create_bucket(&helpers::moto_s3().await, &bucket)
        .await
        .expect("bucket");
    let store = storefront::store::dynamo::DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &table,
        helpers::system_clock(),
    );
    // Where moto is, as a user names a deployed stack's resources in a copy of the file.
    let moto = [
        ("AWS_ENDPOINT_URL", helpers::moto().endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("STOREFRONT_TABLE", table.clone()),
        ("STOREFRONT_QUEUE_URL", queue_url.clone()),
        ("STOREFRONT_BUCKET", bucket.clone()),
        ("STOREFRONT_S3_PATH_STYLE", "true".to_owned()),
    ];
    let mut failures = Vec::new();
    for (file, function, event) in sample_events() {
        let bootstrap = bootstraps().join(&function).join("bootstrap");
        assert!(
            bootstrap.exists(),
            "{} is missing: `cargo lambda build --release --arm64` (.ci/test) builds it",
            bootstrap.display()
        );
        let logical_id = format!(
            "{}Function",
            storefront_tests::template::logical_id(&function)
        );
        let mut environment = sam_local_environment(&template, &logical_id);
        assert!(
            environment.contains_key("STOREFRONT_JWKS"),
            "{logical_id} gets a JWKS"
        );
        environment.extend(moto.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let expectation =
            expected(&file).unwrap_or_else(|| panic!("events/{file} has no expected answer"));
        let job = Job::DeleteBlob {
            key: format!("uploads/waiting-{file}"),
        };
        if let Expect::Relayed { tenant_id } = &expectation {
            let waiting = outbox::enqueue(
                &job,
                &format!("msg_01JD00000000000000000{:05}", file.len()),
                tenant_id,
                chrono::Utc::now(),
            )
            .expect("outbox item");
            store.write(waiting).await.expect("written");
        }
        let (answer, output) = tokio::task::spawn_blocking({
            let (bootstrap, environment, event) =
                (bootstrap.clone(), environment.clone(), event.clone());
            move || invoke(&bootstrap, &environment, &event)
        })
        .await
        .expect("invoked");
        let outcome = match expectation {
            Expect::Status(status) => (answer["statusCode"] == status)
                .then_some(())
                .ok_or_else(|| format!("expected {status}")),
            Expect::Failures(ids) => {
                let failed: Vec<&str> = answer["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect();
                (failed == ids)
                    .then_some(())
                    .ok_or_else(|| format!("expected failures {ids:?}"))
            }
            Expect::Swept => (answer["failed"] == 0 && answer["expired"].is_u64())
                .then_some(())
                .ok_or_else(|| "expected a sweep with no failure".to_owned()),
            Expect::Relayed { .. } => {
                let received = sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(2)
                    .send()
                    .await
                    .expect("receive");
                let bodies: Vec<&str> = received
                    .messages()
                    .iter()
                    .filter_map(|m| m.body())
                    .collect();
                let sent = job.to_body().expect("body");
                let none_failed = answer["batchItemFailures"]
                    .as_array()
                    .is_none_or(Vec::is_empty);
                (none_failed && bodies.contains(&sent.as_str()))
                    .then_some(())
                    .ok_or_else(|| format!("expected {sent} on the queue, got {bodies:?}"))
            }
        };
        if let Err(why) = outcome {
            failures.push(format!(
                "events/{file} ({logical_id}): {why}, got {answer}\n{output}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
