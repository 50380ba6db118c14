//! `bench-hello`: the smallest lambda_http function, built with the workspace release profile
//! as the baseline the `bench` command compares every Storefront function with.

use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_req: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
