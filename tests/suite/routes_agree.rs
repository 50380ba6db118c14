//! The route table is the one source of truth: template.yaml, openapi.yaml, the functions/
//! directory and the local router must list exactly its routes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_norway::Value;
use storefront::http::router::Access;
use storefront::routes::{self, ROUTES};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

type RouteSet = BTreeSet<(String, String, String)>;

fn table_routes() -> RouteSet {
    ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                r.function.to_owned(),
            )
        })
        .collect()
}

/// Every function resource of template.yaml: (logical id, crate name under functions/, properties).
fn template_functions() -> Vec<(String, String, Value)> {
    let template = yaml("template.yaml");
    let resources = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .clone();
    resources
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| {
            let code = r["Properties"]["CodeUri"]
                .as_str()
                .expect("CodeUri")
                .to_owned();
            let name = code
                .strip_prefix("functions/")
                .unwrap_or_else(|| panic!("{code} is not under functions/"))
                .to_owned();
            (
                id.as_str().unwrap_or_default().to_owned(),
                name,
                r["Properties"].clone(),
            )
        })
        .collect()
}

fn template_routes() -> RouteSet {
    let mut routes = RouteSet::new();
    for (_, function, properties) in template_functions() {
        let Some(events) = properties["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"] == "HttpApi" {
                let p = &event["Properties"];
                if p["Path"] == "$default" {
                    // Not a route: what API Gateway matches when no route does.
                    continue;
                }
                routes.insert((
                    p["Method"].as_str().expect("Method").to_uppercase(),
                    p["Path"].as_str().expect("Path").to_owned(),
                    function.clone(),
                ));
            }
        }
    }
    routes
}

#[test]
fn template_yaml_routes_each_route_to_its_function() {
    assert_eq!(template_routes(), table_routes());
}

#[test]
fn every_request_no_route_matches_goes_to_the_not_found_function() {
    let mut defaults = Vec::new();
    for (_, function, properties) in template_functions() {
        for (_, event) in properties["Events"].as_mapping().into_iter().flatten() {
            let p = &event["Properties"];
            if event["Type"] == "HttpApi" && p["Path"] == "$default" {
                defaults.push((function.clone(), p["Method"].as_str().map(str::to_owned)));
            }
        }
    }
    assert_eq!(
        defaults,
        [(routes::UNMATCHED.to_owned(), Some("ANY".to_owned()))]
    );
}

#[test]
fn openapi_yaml_documents_every_route_and_no_other() {
    let spec = yaml("openapi.yaml");
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().unwrap_or_default().to_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                documented.insert((method, path.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    let table: BTreeSet<_> = table_routes().into_iter().map(|(m, p, _)| (m, p)).collect();
    assert_eq!(documented, table);
}

#[test]
fn openapi_yaml_says_who_may_call_each_operation_as_the_route_table_does() {
    let spec = yaml("openapi.yaml");
    for route in ROUTES {
        let method = route.method.as_str().to_lowercase();
        let operation = &spec["paths"][route.path][method.as_str()];
        let access = route.access();
        let expected_security: Value = serde_norway::from_str(match access {
            Access::Anyone => "[]",
            // Anonymous, or with a bearer credential: OpenAPI's `{}` is "no security".
            Access::Visitor => "[{}, {bearerAuth: []}]",
            _ => "[{bearerAuth: []}]",
        })
        .expect("yaml");
        assert_eq!(
            operation["security"], expected_security,
            "{route:?}: openapi.yaml's security"
        );
        assert_eq!(
            operation["x-access"].as_str(),
            Some(access.as_str()),
            "{route:?}: openapi.yaml's x-access"
        );
        let documents = |status: &str| operation["responses"].get(status).is_some();
        if access != Access::Anyone {
            assert!(documents("401"), "{route:?} documents its 401");
        }
        // Every live credential holds at least the customer role: only a greater role, or a
        // session (which an API key is not), can be refused with 403.
        if matches!(access, Access::Session)
            || matches!(access, Access::Role(role) if role != storefront::domain::Role::Customer)
        {
            assert!(documents("403"), "{route:?} documents its 403");
        }
    }
}

#[test]
fn every_function_crate_is_in_the_template_and_every_template_function_has_a_crate() {
    let crates: BTreeSet<String> = std::fs::read_dir(repo().join("functions"))
        .expect("functions/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let deployed: BTreeSet<String> = template_functions()
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(crates, deployed);
    for route in ROUTES {
        assert!(
            crates.contains(route.function),
            "{route:?} names a function with no crate"
        );
    }
}

#[test]
fn every_function_is_built_by_cargo_lambda_for_arm64() {
    let template = yaml("template.yaml");
    assert_eq!(template["Globals"]["Function"]["Architectures"][0], "arm64");
    assert_eq!(
        template["Globals"]["Function"]["Runtime"],
        "provided.al2023"
    );
    for (id, _, _) in template_functions() {
        let resource = &template["Resources"][id.as_str()];
        assert_eq!(
            resource["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{id}"
        );
    }
}

/// Collects the actions of every `Effect: Allow` statement anywhere in the document.
fn allowed_actions(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            if map.get("Effect").and_then(Value::as_str) == Some("Allow") {
                match map.get("Action") {
                    Some(Value::String(a)) => into.push(a.clone()),
                    Some(Value::Sequence(all)) => {
                        into.extend(all.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    _ => {}
                }
            }
            map.values().for_each(|v| allowed_actions(v, into));
        }
        Value::Sequence(all) => all.iter().for_each(|v| allowed_actions(v, into)),
        Value::Tagged(tagged) => allowed_actions(&tagged.value, into),
        _ => {}
    }
}

#[test]
fn no_function_is_granted_a_wildcard_action_or_a_broad_managed_policy() {
    let text = std::fs::read_to_string(repo().join("template.yaml")).expect("template");
    for broad in [
        "DynamoDBCrudPolicy",
        "DynamoDBReadPolicy",
        "DynamoDBWritePolicy",
        "S3CrudPolicy",
        "S3ReadPolicy",
        "SQSPollerPolicy",
    ] {
        assert!(!text.contains(broad), "template.yaml uses {broad}");
    }
    let mut actions = Vec::new();
    allowed_actions(&yaml("template.yaml"), &mut actions);
    assert!(
        !actions.is_empty(),
        "no Allow statement found: the walk is broken"
    );
    for action in actions {
        assert!(!action.contains('*'), "an Allow statement grants {action}");
    }
}

#[test]
fn the_local_router_resolves_every_route_to_its_own_handler() {
    for route in ROUTES {
        let concrete = route.path.replace('{', "x").replace('}', "");
        let (found, _) = routes::find(ROUTES, &route.method, &concrete).expect("route resolves");
        assert_eq!(
            (found.method.clone(), found.path),
            (route.method.clone(), route.path)
        );
    }
}

/// The logical id a `!GetAtt X.Arn` or `!Ref X` names.
fn referenced(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) => tagged
            .value
            .as_str()
            .map(|s| s.trim_end_matches(".Arn").to_owned()),
        _ => None,
    }
}

#[test]
fn every_function_runs_as_its_own_role_which_may_write_only_its_own_log_group() {
    let template = yaml("template.yaml");
    let mut roles = BTreeSet::new();
    for (id, _, properties) in template_functions() {
        // Without a Role, SAM makes one with AWSLambdaBasicExecutionRole: logs on every
        // log group ("*"), which is more than a function uses.
        let role = referenced(&properties["Role"])
            .unwrap_or_else(|| panic!("{id} has no Role of its own"));
        assert!(roles.insert(role.clone()), "{id} shares the role {role}");
        let log_group = referenced(&properties["LoggingConfig"]["LogGroup"])
            .unwrap_or_else(|| panic!("{id} names no log group"));
        assert_eq!(
            template["Resources"][log_group.as_str()]["Type"],
            "AWS::Logs::LogGroup",
            "{id}"
        );
        let mut log_statements = 0;
        for policy in template["Resources"][role.as_str()]["Properties"]["Policies"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{role} has no policies"))
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_sequence()
                .expect("statements")
            {
                let mut actions = Vec::new();
                allowed_actions(statement, &mut actions);
                if actions.iter().any(|a| a.starts_with("logs:")) {
                    log_statements += 1;
                    assert_eq!(
                        referenced(&statement["Resource"]).as_deref(),
                        Some(log_group.as_str()),
                        "{id}'s log rights name another resource"
                    );
                }
            }
        }
        assert_eq!(
            log_statements, 1,
            "{id} may write its logs once, and only there"
        );
    }
}

/// The routes each of whose requests costs an argon2id hash.
const PASSWORD_ROUTES: [(&str, &str, &str); 4] = [
    ("POST", "/v1/tenants", "tenants-create"),
    ("POST", "/v1/auth/signup", "auth-signup"),
    ("POST", "/v1/auth/login", "auth-login"),
    ("POST", "/v1/members", "members-create"),
];

#[test]
fn the_stage_and_the_password_hashing_routes_are_throttled_and_those_functions_reservable() {
    let template = yaml("template.yaml");
    let api = &template["Resources"]["HttpApi"]["Properties"];
    for setting in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        assert!(
            referenced(&api["DefaultRouteSettings"][setting]).is_some(),
            "the stage's {setting}"
        );
    }
    let table = table_routes();
    for (method, path, function) in PASSWORD_ROUTES {
        assert!(
            table.contains(&(method.into(), path.into(), function.into())),
            "{method} {path} is a route of {function}"
        );
        let route = &api["RouteSettings"][format!("{method} {path}").as_str()];
        assert_eq!(
            referenced(&route["ThrottlingRateLimit"]).as_deref(),
            Some("PasswordRouteThrottleRate"),
            "{method} {path}"
        );
        assert_eq!(
            referenced(&route["ThrottlingBurstLimit"]).as_deref(),
            Some("PasswordRouteThrottleBurst"),
            "{method} {path}"
        );
        let (_, _, properties) = template_functions()
            .into_iter()
            .find(|(_, name, _)| name == function)
            .expect("the function");
        let reserved = format!("{:?}", properties["ReservedConcurrentExecutions"]);
        assert!(
            reserved.contains("PasswordFunctionReservedConcurrency"),
            "{function}: {reserved}"
        );
    }
}

#[test]
fn template_yaml_is_what_its_generator_writes() {
    let rendered = storefront_tests::template::render(&repo()).expect("the generator runs");
    let current = std::fs::read_to_string(repo().join("template.yaml")).expect("template");
    assert!(
        rendered == current,
        "template.yaml is not what its generator writes: run `cargo run -p storefront-tests --bin template`"
    );
}

#[test]
fn every_function_is_traced_and_logs_json() {
    let template = yaml("template.yaml");
    assert_eq!(template["Globals"]["Function"]["Tracing"], "Active");
    for (id, _, properties) in template_functions() {
        assert_eq!(properties["LoggingConfig"]["LogFormat"], "JSON", "{id}");
    }
}

/// Every alarm of the template: (logical id, properties).
fn alarms(template: &Value) -> Vec<(String, Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| {
            (
                id.as_str().unwrap_or_default().to_owned(),
                r["Properties"].clone(),
            )
        })
        .collect()
}

#[test]
fn alarms_watch_5xx_dead_letters_the_relay_and_every_functions_errors_and_throttles() {
    let template = yaml("template.yaml");
    let alarms = alarms(&template);
    let watching = |namespace: &str, metric: &str, dimension: &str| -> Vec<String> {
        alarms
            .iter()
            .filter(|(_, p)| p["Namespace"] == namespace && p["MetricName"] == metric)
            .filter_map(|(_, p)| referenced(&p["Dimensions"][0]["Value"]))
            .filter(|d| d.starts_with(dimension) || dimension.is_empty())
            .collect()
    };
    assert_eq!(watching("AWS/ApiGateway", "5xx", ""), ["HttpApi"]);
    let queues = watching("AWS/SQS", "ApproximateNumberOfMessagesVisible", "");
    for queue in [
        "JobsDeadLetterQueue.QueueName",
        "OutboxRelayFailuresQueue.QueueName",
    ] {
        assert!(queues.iter().any(|q| q == queue), "{queue}: {queues:?}");
    }
    assert_eq!(
        watching("AWS/Lambda", "IteratorAge", ""),
        ["OutboxRelayFunction"]
    );
    for (id, _, _) in template_functions() {
        for metric in ["Errors", "Throttles"] {
            assert!(
                watching("AWS/Lambda", metric, &id).contains(&id),
                "{id} has no {metric} alarm"
            );
        }
    }
    for (id, properties) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let text = format!("{:?}", properties[actions]);
            assert!(
                text.contains("HasAlarmTopic") && text.contains("AlarmTopicArn"),
                "{id}'s {actions} notify the optional topic: {text}"
            );
        }
    }
}

#[test]
fn the_api_writes_an_access_log_line_per_request_with_its_request_id() {
    let template = yaml("template.yaml");
    let settings = &template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"];
    assert_eq!(
        referenced(&settings["DestinationArn"]).as_deref(),
        Some("ApiAccessLogGroup")
    );
    let format: serde_json::Value =
        serde_json::from_str(settings["Format"].as_str().expect("a format")).expect("JSON lines");
    assert_eq!(format["request_id"], "$context.requestId");
    assert_eq!(format["status"], "$context.status");
}

/// The layers `shared/src/lib.rs`'s map lists, bottom first: each bullet's modules.
fn layers() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(repo().join("shared/src/lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - "))
        .map(|bullet| {
            let head = bullet.split(':').next().unwrap_or_default();
            head.split("[`")
                .skip(1)
                .filter_map(|part| part.split('`').next())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The `crate::<module>` paths a module's code (not its comments) names.
fn imports_of(module: &str) -> BTreeSet<String> {
    let src = repo().join("shared/src");
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut imports = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for part in line.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module && !name.is_empty() {
                    imports.insert(name);
                }
            }
        }
    }
    imports
}

#[test]
fn every_import_in_the_library_points_to_a_module_listed_before_it_in_lib_rs() {
    let layers = layers();
    let layer_of = |module: &str| layers.iter().position(|l| l.iter().any(|m| m == module));
    let listed: Vec<&String> = layers.iter().flatten().collect();
    assert!(
        listed.len() > 15,
        "lib.rs's map lists the modules: {listed:?}"
    );
    let mut upward = Vec::new();
    for module in &listed {
        let own = layer_of(module).expect("listed");
        for import in imports_of(module) {
            // `crate::validate!` and the like are macros, not modules.
            if let Some(theirs) = layer_of(&import) {
                if theirs > own {
                    upward.push(format!("{module} imports {import}, listed after it"));
                }
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}
