//! The `Blobs` conformance suite: every case runs against the embedded adapter and against
//! the S3 adapter on moto, and both must behave the same.
//!
//! moto does not check S3 signatures, so presigning is checked per adapter: for S3, what the
//! URL signs and that an upload through it lands; for the embedded adapter, which checks its
//! own signatures, every way a presigned request can be refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use storefront::blobs::embedded::EmbeddedBlobs;
use storefront::blobs::s3::{create_bucket, S3Blobs};
use storefront::blobs::{BlobError, BlobMeta, Blobs, MAX_PRESIGN_TTL};
use storefront::clock::{Clock, SystemClock};
use storefront::crypto::SigningKey;

use crate::helpers;

/// Where the embedded adapter's presigned URLs point (nothing listens; the tests call the
/// adapter's checks directly).
const BASE_URL: &str = "http://127.0.0.1:9";

/// A blob store and whatever keeps it alive.
pub struct Fixture {
    pub blobs: Arc<dyn Blobs>,
    _guard: Option<tempfile::TempDir>,
}

pub async fn embedded() -> Fixture {
    let dir = helpers::temp_dir();
    let blobs = EmbeddedBlobs::open(
        &dir.path().join("blobs"),
        BASE_URL,
        SigningKey::generate().expect("key"),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .expect("open");
    Fixture {
        blobs: Arc::new(blobs),
        _guard: Some(dir),
    }
}

/// A fresh bucket on moto.
async fn bucket() -> S3Blobs {
    let client = helpers::moto_s3().await;
    let name = helpers::unique("bucket");
    create_bucket(&client, &name)
        .await
        .expect("create bucket on moto");
    S3Blobs::new(client, name)
}

pub async fn s3() -> Fixture {
    Fixture {
        blobs: Arc::new(bucket().await),
        _guard: None,
    }
}

conformance!(embedded, s3;
    an_object_reads_back_with_its_bytes_and_content_type,
    head_gives_the_type_and_length_and_none_for_a_missing_key,
    a_missing_object_reads_as_none,
    a_delete_removes_the_object_and_deleting_nothing_is_fine,
    keys_that_escape_or_are_malformed_are_refused_by_every_operation,
    a_presigned_put_names_its_method_expiry_and_the_headers_to_send,
    a_presigned_get_names_its_method_and_expiry,
    a_presign_lifetime_of_zero_or_over_seven_days_is_refused,
);

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe binary";

fn is_invalid<T: std::fmt::Debug>(result: &Result<T, BlobError>) -> bool {
    matches!(result, Err(BlobError::Invalid(_)))
}

/// Checks `expires_at` is `ttl` after a moment between `before` and now, give or take a second.
fn assert_expires_after(
    expires_at: chrono::DateTime<Utc>,
    before: chrono::DateTime<Utc>,
    ttl: Duration,
) {
    let ttl = chrono::Duration::from_std(ttl).expect("ttl");
    let slack = chrono::Duration::seconds(1);
    let after = Utc::now();
    assert!(
        expires_at >= before + ttl - slack && expires_at <= after + ttl + slack,
        "expires at {expires_at}, not {ttl} after {before}..{after}"
    );
}

async fn an_object_reads_back_with_its_bytes_and_content_type(f: Fixture) {
    let key = "products/p1/image.png";
    f.blobs
        .put(key, Bytes::from_static(PNG), "image/png", None)
        .await
        .unwrap();
    let blob = f.blobs.get(key).await.unwrap().expect("object");
    assert_eq!(blob.bytes, PNG);
    assert_eq!(blob.content_type, "image/png");
    // A second put replaces the object whole.
    f.blobs
        .put(key, Bytes::from_static(b"{}"), "application/json", None)
        .await
        .unwrap();
    let replaced = f.blobs.get(key).await.unwrap().expect("object");
    assert_eq!(replaced.bytes, &b"{}"[..]);
    assert_eq!(replaced.content_type, "application/json");
}

async fn head_gives_the_type_and_length_and_none_for_a_missing_key(f: Fixture) {
    f.blobs
        .put("a/b.png", Bytes::from_static(PNG), "image/png", None)
        .await
        .unwrap();
    assert_eq!(
        f.blobs.head("a/b.png").await.unwrap(),
        Some(BlobMeta {
            content_type: "image/png".to_owned(),
            content_length: PNG.len() as u64,
        })
    );
    assert_eq!(f.blobs.head("a/missing.png").await.unwrap(), None);
    assert_eq!(
        f.blobs.head("a").await.unwrap(),
        None,
        "a key prefix is not an object"
    );
}

async fn a_missing_object_reads_as_none(f: Fixture) {
    assert_eq!(f.blobs.get("nothing/here.png").await.unwrap(), None);
}

async fn a_delete_removes_the_object_and_deleting_nothing_is_fine(f: Fixture) {
    let (gone, kept) = ("t1/gone.txt", "t1/kept.txt");
    for key in [gone, kept] {
        f.blobs
            .put(key, Bytes::from_static(b"text"), "text/plain", None)
            .await
            .unwrap();
    }
    f.blobs.delete(gone).await.unwrap();
    assert_eq!(f.blobs.get(gone).await.unwrap(), None);
    assert_eq!(f.blobs.head(gone).await.unwrap(), None);
    assert!(
        f.blobs.get(kept).await.unwrap().is_some(),
        "only the named object goes"
    );
    f.blobs
        .delete(gone)
        .await
        .expect("deleting a missing object is fine");
    f.blobs
        .delete("never/was.txt")
        .await
        .expect("deleting a missing object is fine");
}

async fn keys_that_escape_or_are_malformed_are_refused_by_every_operation(f: Fixture) {
    let ttl = Duration::from_secs(60);
    for key in ["../x", "/abs", "a//b", "", "a/../b", "a/./b", "a b", "a/"] {
        let body = Bytes::from_static(b"x");
        let put = f.blobs.put(key, body, "text/plain", None).await;
        assert!(is_invalid(&put), "put `{key}`: {put:?}");
        let get = f.blobs.get(key).await;
        assert!(is_invalid(&get), "get `{key}`: {get:?}");
        let head = f.blobs.head(key).await;
        assert!(is_invalid(&head), "head `{key}`: {head:?}");
        let delete = f.blobs.delete(key).await;
        assert!(is_invalid(&delete), "delete `{key}`: {delete:?}");
        let presign_put = f.blobs.presign_put(key, "text/plain", 1, ttl).await;
        assert!(
            is_invalid(&presign_put),
            "presign_put `{key}`: {presign_put:?}"
        );
        let presign_get = f.blobs.presign_get(key, ttl).await;
        assert!(
            is_invalid(&presign_get),
            "presign_get `{key}`: {presign_get:?}"
        );
    }
    f.blobs
        .put("x", Bytes::from_static(b"x"), "text/plain", None)
        .await
        .expect("a plain key is fine");
}

async fn a_presigned_put_names_its_method_expiry_and_the_headers_to_send(f: Fixture) {
    let ttl = Duration::from_secs(300);
    let before = Utc::now();
    let presigned = f
        .blobs
        .presign_put("uploads/u1/photo.png", "image/png", 1234, ttl)
        .await
        .unwrap();
    assert_eq!(presigned.method, "PUT");
    assert!(
        presigned.url.contains("uploads/u1/photo.png"),
        "{}",
        presigned.url
    );
    assert_expires_after(presigned.expires_at, before, ttl);
    assert_eq!(
        presigned.headers.get("content-type").map(String::as_str),
        Some("image/png")
    );
    assert_eq!(
        presigned.headers.get("content-length").map(String::as_str),
        Some("1234")
    );
    let untyped = f.blobs.presign_put("uploads/u1/x", "", 1, ttl).await;
    assert!(
        is_invalid(&untyped),
        "a presigned PUT needs a content type: {untyped:?}"
    );
}

async fn a_presigned_get_names_its_method_and_expiry(f: Fixture) {
    let ttl = Duration::from_secs(600);
    let before = Utc::now();
    let presigned = f
        .blobs
        .presign_get("products/p1/image.png", ttl)
        .await
        .unwrap();
    assert_eq!(presigned.method, "GET");
    assert!(
        presigned.url.contains("products/p1/image.png"),
        "{}",
        presigned.url
    );
    assert_expires_after(presigned.expires_at, before, ttl);
}

async fn a_presign_lifetime_of_zero_or_over_seven_days_is_refused(f: Fixture) {
    for ttl in [Duration::ZERO, MAX_PRESIGN_TTL + Duration::from_secs(1)] {
        let put = f.blobs.presign_put("a.png", "image/png", 1, ttl).await;
        assert!(is_invalid(&put), "presign_put for {ttl:?}: {put:?}");
        let get = f.blobs.presign_get("a.png", ttl).await;
        assert!(is_invalid(&get), "presign_get for {ttl:?}: {get:?}");
    }
    f.blobs
        .presign_put("a.png", "image/png", 1, MAX_PRESIGN_TTL)
        .await
        .expect("seven days exactly is allowed");
    f.blobs
        .presign_get("a.png", MAX_PRESIGN_TTL)
        .await
        .expect("seven days exactly is allowed");
}

/// The raw `name=value` pairs of a URL's query string.
fn raw_query(url: &str) -> &str {
    url.split_once('?').map(|(_, query)| query).unwrap_or("")
}

/// Decodes `%XX` escapes (S3's presigned query values use no other encoding).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 query value")
}

/// The decoded value of the query parameter `name`.
fn param(url: &str, name: &str) -> Option<String> {
    raw_query(url)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

/// The S3 adapter's presigned URLs, which moto accepts without checking their signature.
mod s3_presigning {
    use std::time::Duration;

    use bytes::Bytes;
    use storefront::blobs::{BlobMeta, Blobs};

    use super::param;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_presigned_put_signs_host_content_type_and_length_for_its_lifetime() {
        let blobs = super::bucket().await;
        let ttl = Duration::from_secs(900);
        let presigned = blobs
            .presign_put("uploads/u1/photo.png", "image/png", 1234, ttl)
            .await
            .unwrap();
        let path = presigned.url.split('?').next().unwrap_or_default();
        assert!(path.ends_with("/uploads/u1/photo.png"), "{}", presigned.url);
        let signed = param(&presigned.url, "X-Amz-SignedHeaders").expect("X-Amz-SignedHeaders");
        let signed: Vec<&str> = signed.split(';').collect();
        for header in ["content-length", "content-type", "host"] {
            assert!(signed.contains(&header), "{header} is signed: {signed:?}");
        }
        assert_eq!(
            param(&presigned.url, "X-Amz-Expires").as_deref(),
            Some("900")
        );
        assert_eq!(
            param(&presigned.url, "X-Amz-Algorithm").as_deref(),
            Some("AWS4-HMAC-SHA256")
        );
        assert!(
            param(&presigned.url, "X-Amz-Signature").is_some_and(|s| s.len() == 64),
            "{}",
            presigned.url
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_to_the_presigned_put_url_lands_the_object() {
        let blobs = super::bucket().await;
        let body = Bytes::from_static(b"hello from a browser");
        let presigned = blobs
            .presign_put(
                "uploads/u1/note.txt",
                "text/plain",
                body.len() as u64,
                Duration::from_secs(300),
            )
            .await
            .unwrap();
        assert_eq!(
            blobs.head("uploads/u1/note.txt").await.unwrap(),
            None,
            "presigning stores nothing"
        );
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(presigned.method.as_bytes()).expect("method");
        let mut request = client.request(method, &presigned.url).body(body.clone());
        for (name, value) in &presigned.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("moto answers");
        let status = response.status();
        assert!(
            status.is_success(),
            "{status}: {}",
            response.text().await.unwrap_or_default()
        );
        assert_eq!(
            blobs.head("uploads/u1/note.txt").await.unwrap(),
            Some(BlobMeta {
                content_type: "text/plain".to_owned(),
                content_length: body.len() as u64,
            })
        );
        let blob = blobs
            .get("uploads/u1/note.txt")
            .await
            .unwrap()
            .expect("object");
        assert_eq!(blob.bytes, body);
    }
}

/// The embedded adapter's own checks of presigned requests, the ones the local server's
/// `/_blobs/` route applies, on a clock the tests move.
mod embedded_presigning {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use storefront::blobs::embedded::{EmbeddedBlobs, PresignRefusal};
    use storefront::blobs::{BlobMeta, Blobs};
    use storefront::clock::{Clock, ManualClock};
    use storefront::crypto::SigningKey;

    use super::raw_query;
    use crate::helpers;

    struct Local {
        blobs: EmbeddedBlobs,
        clock: Arc<ManualClock>,
        _dir: tempfile::TempDir,
    }

    fn local() -> Local {
        let dir = helpers::temp_dir();
        let clock = Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        ));
        let blobs = EmbeddedBlobs::open(
            dir.path(),
            super::BASE_URL,
            SigningKey::generate().expect("key"),
            clock.clone() as Arc<dyn Clock>,
        )
        .expect("open");
        Local {
            blobs,
            clock,
            _dir: dir,
        }
    }

    const KEY: &str = "uploads/u1/photo.png";
    const BODY: &[u8] = b"\x89PNG\r\n\x1a\n twelve+";
    const TTL: Duration = Duration::from_secs(60);

    fn body() -> Bytes {
        Bytes::from_static(BODY)
    }

    impl Local {
        /// The query string of a presigned PUT of `BODY` as `image/png` at `key`.
        async fn put_query(&self, key: &str) -> String {
            let presigned = self
                .blobs
                .presign_put(key, "image/png", BODY.len() as u64, TTL)
                .await
                .unwrap();
            assert!(
                presigned
                    .url
                    .starts_with(&format!("{}/_blobs/{key}?", super::BASE_URL)),
                "{}",
                presigned.url
            );
            raw_query(&presigned.url).to_owned()
        }

        async fn get_query(&self, key: &str) -> String {
            let presigned = self.blobs.presign_get(key, TTL).await.unwrap();
            raw_query(&presigned.url).to_owned()
        }

        async fn stored(&self, key: &str) -> Option<BlobMeta> {
            self.blobs.head(key).await.unwrap()
        }
    }

    /// `query` with the raw value of `name` replaced (or the pair removed, for `None`).
    fn with_param(query: &str, name: &str, value: Option<&str>) -> String {
        let mut found = false;
        let pairs: Vec<String> = query
            .split('&')
            .filter_map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == name => {
                    found = true;
                    value.map(|v| format!("{key}={v}"))
                }
                _ => Some(pair.to_owned()),
            })
            .collect();
        assert!(found, "{name} is in {query}");
        pairs.join("&")
    }

    fn raw_param<'q>(query: &'q str, name: &str) -> &'q str {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("{name} is in {query}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_with_the_signed_type_length_and_signature_stores_the_object() {
        let l = local();
        let query = l.put_query(KEY).await;
        l.blobs
            .accept_put(KEY, &query, Some("image/png"), body())
            .await
            .unwrap();
        assert_eq!(
            l.stored(KEY).await,
            Some(BlobMeta {
                content_type: "image/png".to_owned(),
                content_length: BODY.len() as u64,
            })
        );
        let blob = l.blobs.get(KEY).await.unwrap().expect("object");
        assert_eq!(blob.bytes, BODY);
        assert_eq!(blob.content_type, "image/png");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_presigned_get_serves_the_object_and_none_when_it_is_missing() {
        let l = local();
        l.blobs.put(KEY, body(), "image/png", None).await.unwrap();
        let served = l
            .blobs
            .serve_get(KEY, &l.get_query(KEY).await)
            .await
            .unwrap()
            .expect("object");
        assert_eq!(served.bytes, BODY);
        assert_eq!(served.content_type, "image/png");
        let missing = "uploads/u1/missing.png";
        assert_eq!(
            l.blobs
                .serve_get(missing, &l.get_query(missing).await)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_of_another_content_type_is_refused_and_stores_nothing() {
        let l = local();
        let query = l.put_query(KEY).await;
        for content_type in [Some("image/jpeg"), Some("image/png; charset=x"), None] {
            assert_eq!(
                l.blobs.accept_put(KEY, &query, content_type, body()).await,
                Err(PresignRefusal::WrongContentType),
                "{content_type:?}"
            );
        }
        assert_eq!(l.stored(KEY).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_of_another_length_is_refused_and_stores_nothing() {
        let l = local();
        let query = l.put_query(KEY).await;
        let longer = Bytes::from([BODY, b"!"].concat());
        let shorter = Bytes::from_static(&BODY[..BODY.len() - 1]);
        for wrong in [longer, shorter, Bytes::new()] {
            let len = wrong.len();
            assert_eq!(
                l.blobs
                    .accept_put(KEY, &query, Some("image/png"), wrong)
                    .await,
                Err(PresignRefusal::WrongContentLength),
                "{len} bytes"
            );
        }
        assert_eq!(l.stored(KEY).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_signature_or_signed_field_is_refused_and_stores_nothing() {
        let l = local();
        let query = l.put_query(KEY).await;
        let signature = raw_param(&query, "X-Signature");
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered_signature = format!("{flipped}{}", &signature[1..]);
        let longer = format!("{}", BODY.len() + 1);
        let later = format!(
            "{}",
            raw_param(&query, "X-Expires").parse::<i64>().unwrap() + 3600
        );
        let tampered = [
            with_param(&query, "X-Signature", Some(&tampered_signature)),
            with_param(&query, "X-Signature", Some("")),
            with_param(&query, "X-Signature", None),
            with_param(&query, "X-Content-Type", Some("image%2Fjpeg")),
            with_param(&query, "X-Content-Length", Some(&longer)),
            with_param(&query, "X-Expires", Some(&later)),
            String::new(),
        ];
        for bad in &tampered {
            // The body and type match whatever the tampered query claims, so only the
            // signature can refuse it.
            let content_type = if bad.contains("image%2Fjpeg") {
                "image/jpeg"
            } else {
                "image/png"
            };
            let body = if bad.contains(&format!("X-Content-Length={longer}")) {
                Bytes::from([BODY, b"!"].concat())
            } else {
                body()
            };
            assert_eq!(
                l.blobs.accept_put(KEY, bad, Some(content_type), body).await,
                Err(PresignRefusal::BadSignature),
                "{bad}"
            );
        }
        assert_eq!(l.stored(KEY).await, None);
        // The untampered query still works: the refusals were the tampering's doing.
        l.blobs
            .accept_put(KEY, &query, Some("image/png"), body())
            .await
            .unwrap();
        assert!(l.stored(KEY).await.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_url_presigned_for_another_key_is_refused() {
        let l = local();
        let other = "uploads/u2/photo.png";
        let query = l.put_query(KEY).await;
        assert_eq!(
            l.blobs
                .accept_put(other, &query, Some("image/png"), body())
                .await,
            Err(PresignRefusal::BadSignature)
        );
        assert_eq!(
            l.blobs
                .accept_put("../photo.png", &query, Some("image/png"), body())
                .await,
            Err(PresignRefusal::BadSignature)
        );
        assert_eq!(l.stored(other).await, None);
        assert_eq!(l.stored(KEY).await, None);
        // A download URL for one object does not read another.
        l.blobs.put(other, body(), "image/png", None).await.unwrap();
        assert_eq!(
            l.blobs.serve_get(other, &l.get_query(KEY).await).await,
            Err(PresignRefusal::BadSignature)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_url_used_with_another_method_is_refused() {
        let l = local();
        l.blobs.put(KEY, body(), "image/png", None).await.unwrap();
        let put = l.put_query(KEY).await;
        let get = l.get_query(KEY).await;
        assert_eq!(
            l.blobs.serve_get(KEY, &put).await,
            Err(PresignRefusal::WrongMethod),
            "an upload URL does not download"
        );
        let other = "uploads/u1/other.png";
        let get_other = l.get_query(other).await;
        assert_eq!(
            l.blobs
                .accept_put(other, &get_other, Some("image/png"), body())
                .await,
            Err(PresignRefusal::WrongMethod),
            "a download URL does not upload"
        );
        assert_eq!(l.stored(other).await, None);
        // Rewriting the signed method breaks the signature instead.
        assert_eq!(
            l.blobs
                .serve_get(KEY, &with_param(&put, "X-Method", Some("GET")))
                .await,
            Err(PresignRefusal::BadSignature)
        );
        assert_eq!(
            l.blobs
                .accept_put(
                    other,
                    &with_param(&get_other, "X-Method", Some("PUT")),
                    Some("image/png"),
                    body()
                )
                .await,
            Err(PresignRefusal::BadSignature)
        );
        assert!(l.blobs.serve_get(KEY, &get).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_url_is_refused_and_stores_nothing() {
        let l = local();
        let (early, late) = ("uploads/u1/early.png", "uploads/u1/late.png");
        let early_put = l.put_query(early).await;
        let late_put = l.put_query(late).await;
        let early_get = l.get_query(early).await;
        l.clock.advance(TTL - Duration::from_secs(1));
        l.blobs
            .accept_put(early, &early_put, Some("image/png"), body())
            .await
            .expect("still valid a second before it expires");
        assert!(l
            .blobs
            .serve_get(early, &early_get)
            .await
            .unwrap()
            .is_some());
        l.clock.advance(Duration::from_secs(2));
        assert_eq!(
            l.blobs
                .accept_put(late, &late_put, Some("image/png"), body())
                .await,
            Err(PresignRefusal::Expired)
        );
        assert_eq!(l.stored(late).await, None);
        assert_eq!(
            l.blobs.serve_get(early, &early_get).await,
            Err(PresignRefusal::Expired),
            "an expired download URL is refused though the object exists"
        );
    }
}
