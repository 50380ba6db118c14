//! X-Ray subsegments of real SDK calls (against moto): each call is reported to the daemon
//! as a subsegment of the invocation's trace, and an unsampled invocation reports nothing.

use std::net::UdpSocket;
use std::time::Duration;

use storefront::xray::XRay;

use crate::helpers;

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8";

/// A fake X-Ray daemon on a free loopback port.
fn daemon() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binds");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let address = socket.local_addr().expect("address").to_string();
    (socket, address)
}

async fn dynamo_with(xray: XRay) -> aws_sdk_dynamodb::Client {
    let sdk = helpers::moto_sdk().await;
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(xray)
            .build(),
    )
}

#[tokio::test]
async fn each_sdk_call_of_a_sampled_invocation_is_a_subsegment_of_its_trace() {
    let (socket, address) = daemon();
    let client = dynamo_with(XRay::to(&address, &format!("{TRACE};Sampled=1"))).await;
    let listed = client.list_tables().send().await;
    assert!(listed.is_ok(), "{listed:?}");
    let mut datagram = [0u8; 8192];
    let n = socket
        .recv(&mut datagram)
        .expect("a subsegment reached the daemon");
    let text = std::str::from_utf8(&datagram[..n]).expect("text");
    let (header, document) = text.split_once('\n').expect("a header line");
    let header: serde_json::Value = serde_json::from_str(header).expect("header JSON");
    assert_eq!(header, serde_json::json!({"format": "json", "version": 1}));
    let doc: serde_json::Value = serde_json::from_str(document).expect("document JSON");
    assert_eq!(doc["name"], "DynamoDB");
    assert_eq!(doc["aws"]["operation"], "ListTables");
    assert_eq!(doc["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(doc["http"]["response"]["status"], 200);
    assert!(doc["start_time"].as_f64() <= doc["end_time"].as_f64());
}

#[tokio::test]
async fn an_unsampled_invocation_reports_nothing() {
    let (socket, address) = daemon();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let client = dynamo_with(XRay::to(&address, &format!("{TRACE};Sampled=0"))).await;
    assert!(client.list_tables().send().await.is_ok());
    let mut datagram = [0u8; 8192];
    assert!(socket.recv(&mut datagram).is_err(), "nothing was sent");
}
