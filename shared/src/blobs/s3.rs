//! The S3 `Blobs` adapter: one bucket on AWS, with SigV4-presigned URLs for direct uploads
//! and downloads.
//!
//! A presigned PUT signs `Content-Type` and `Content-Length` as headers, so S3 itself
//! refuses an upload of another type or size
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/PresignedUrlUploadObject.html>).

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{validate_key, validate_ttl, Blob, BlobError, BlobMeta, Blobs, Presigned};

/// S3's own default for an object stored without a type.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// The one region where a bucket is created without a location constraint.
const DEFAULT_REGION: &str = "us-east-1";

/// One S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn failed<E>(&self, err: SdkError<E>, operation: &str, key: &str) -> BlobError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        BlobError::Backend(
            anyhow::Error::new(err).context(format!("S3 {operation} of {}/{key}", self.bucket)),
        )
    }
}

fn presigning(ttl: Duration) -> Result<PresigningConfig, BlobError> {
    validate_ttl(ttl)?;
    PresigningConfig::expires_in(ttl)
        .map_err(|e| BlobError::Invalid(format!("presign lifetime {ttl:?}: {e}")))
}

/// The client's view of a presigned request; it expires when the signature says.
fn presigned(request: &PresignedRequest, config: &PresigningConfig) -> Presigned {
    Presigned {
        method: request.method().to_owned(),
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect(),
        expires_at: DateTime::<Utc>::from(config.start_time() + config.expires()),
    }
}

fn meta(content_type: Option<&str>, content_length: Option<i64>) -> anyhow::Result<BlobMeta> {
    let length = content_length.context("S3 returned no Content-Length")?;
    Ok(BlobMeta {
        content_type: content_type.unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
        content_length: u64::try_from(length)
            .with_context(|| format!("S3 Content-Length {length} is negative"))?,
    })
}

#[async_trait]
impl Blobs for S3Blobs {
    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<Presigned, BlobError> {
        validate_key(key)?;
        if content_type.is_empty() {
            return Err(BlobError::Invalid(
                "a presigned PUT needs a content type".into(),
            ));
        }
        let length = i64::try_from(content_length).map_err(|_| {
            BlobError::Invalid(format!("content length {content_length} is too large"))
        })?;
        let config = presigning(ttl)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .presigned(config.clone())
            .await
            .map_err(|e| self.failed(e, "presigning PutObject", key))?;
        let mut presigned = presigned(&request, &config);
        // The signature covers both; the client must send them exactly.
        presigned
            .headers
            .entry("content-type".to_owned())
            .or_insert_with(|| content_type.to_owned());
        presigned
            .headers
            .entry("content-length".to_owned())
            .or_insert_with(|| content_length.to_string());
        Ok(presigned)
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Presigned, BlobError> {
        validate_key(key)?;
        let config = presigning(ttl)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config.clone())
            .await
            .map_err(|e| self.failed(e, "presigning GetObject", key))?;
        Ok(presigned(&request, &config))
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        validate_key(key)?;
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some(
                meta(output.content_type(), output.content_length())
                    .with_context(|| format!("S3 HeadObject of {}/{key}", self.bucket))?,
            )),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(HeadObjectError::is_not_found) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.failed(err, "HeadObject", key)),
        }
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn get(&self, key: &str) -> Result<Option<Blob>, BlobError> {
        validate_key(key)?;
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(GetObjectError::is_no_such_key) =>
            {
                return Ok(None)
            }
            Err(err) => return Err(self.failed(err, "GetObject", key)),
        };
        let content_type = output
            .content_type()
            .unwrap_or(DEFAULT_CONTENT_TYPE)
            .to_owned();
        let cache_control = output.cache_control().map(str::to_owned);
        let body = output
            .body
            .collect()
            .await
            .with_context(|| format!("reading the body of S3 object {}/{key}", self.bucket))?;
        Ok(Some(Blob {
            content_type,
            cache_control,
            bytes: body.into_bytes(),
        }))
    }

    #[tracing::instrument(skip(self, bytes), fields(bucket = %self.bucket, len = bytes.len()))]
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_cache_control(cache_control.map(str::to_owned))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.failed(e, "PutObject", key))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        // S3 answers a delete of a missing object with success, as the port wants.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed(e, "DeleteObject", key))?;
        Ok(())
    }
}

/// Creates a bucket in the client's region; one we already own is left as it is.
#[tracing::instrument(skip(client))]
pub async fn create_bucket(client: &Client, name: &str) -> anyhow::Result<()> {
    // Outside us-east-1, S3 wants the region named again as the location constraint.
    let location = client
        .config()
        .region()
        .map(|region| region.as_ref())
        .filter(|region| *region != DEFAULT_REGION)
        .map(|region| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build()
        });
    let result = client
        .create_bucket()
        .bucket(name)
        .set_create_bucket_configuration(location)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("S3 CreateBucket {name}")),
    }
}
