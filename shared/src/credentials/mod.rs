//! Credentials, below every I/O layer but their own files and SSM: password hashing
//! ([`passwords`]), signed access tokens and the key ring ([`tokens`]), where the signing
//! keys live ([`keys`]), the opaque refresh tokens and API keys handed to clients
//! ([`secrets`]), private key files written whole or not at all ([`files`]), and the
//! payment provider's webhook signatures ([`stripe_signature`]), and the Standard Webhooks
//! signatures of Storefront's own deliveries ([`webhook_signature`]).
//! Authenticating a request with them is `crate::auth`.

pub mod files;
pub mod keys;
pub mod passwords;
pub mod secrets;
pub mod stripe_signature;
pub mod tokens;
pub mod webhook_signature;
