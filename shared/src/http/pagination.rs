//! List pages: `?limit=` (1–100, default 20) and `?cursor=`, answered as
//! `{"items": [...], "next_cursor": "…" | null}`.
//!
//! A cursor is the store's position, base64url-encoded. It is bound to the partition the
//! list reads, which the server derives from the caller: a cursor edited to name another
//! partition (another tenant's, another user's) is refused with 400, never followed.

use serde::Serialize;

use super::{query_param, ApiError, Request};
use crate::crypto::{b64url, b64url_decode};
use crate::store::{Index, Position, Query, GSI1PK, GSI1SK, PK, SK};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Applies the request's `limit` and `cursor` to a list's query. The cursor must name the
/// query's own partition, which the server built from the caller.
pub fn paged(req: &Request, query: Query) -> Result<Query, ApiError> {
    let limit = match query_param(req, "limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`limit` must be a whole number from 1 to {MAX_LIMIT}."
                ))
            })?,
    };
    let after = query_param(req, "cursor")
        .filter(|c| !c.is_empty())
        .map(|c| decode(&c, &query))
        .transpose()?;
    Ok(query.limit(limit).after(after))
}

fn decode(cursor: &str, query: &Query) -> Result<Position, ApiError> {
    let invalid = || ApiError::bad_request("`cursor` is not a cursor this list gave out.");
    let bytes = b64url_decode(cursor).ok_or_else(invalid)?;
    let position: Position = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let index = query.index;
    let (partition_attr, sort_attr) = index.key_names();
    if position.0.get(partition_attr) != Some(&query.partition) {
        return Err(invalid());
    }
    // A start key outside the query's sort-key condition is one DynamoDB refuses
    // ("outside query boundaries"): a 400 here, not a failed store call.
    let in_range = position
        .0
        .get(sort_attr)
        .is_some_and(|sk| query.sort.matches(sk));
    if !in_range {
        return Err(invalid());
    }
    // Exactly the key attributes of an item of this index, none empty: anything else would
    // reach the store as a malformed start key.
    let expected: &[&str] = match index {
        Index::Primary => &[PK, SK],
        Index::Gsi1 => &[GSI1PK, GSI1SK, PK, SK],
    };
    let exact = position.0.len() == expected.len()
        && expected
            .iter()
            .all(|name| position.0.get(*name).is_some_and(|v| !v.is_empty()));
    if !exact {
        return Err(invalid());
    }
    Ok(position)
}

pub fn encode(position: &Position) -> String {
    b64url(
        serde_json::to_string(position)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// A page as the API answers it.
#[derive(Serialize)]
pub struct PageBody<T: Serialize> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: Serialize> PageBody<T> {
    pub fn new(items: Vec<T>, next: Option<Position>) -> Self {
        Self {
            items,
            next_cursor: next.as_ref().map(encode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_request(req: &Request, index: Index, partition: &str) -> Result<Query, ApiError> {
        paged(req, Query::partition(index, partition))
    }

    fn req(query: &str) -> Request {
        http::Request::builder()
            .uri(format!("/v1/members?{query}"))
            .body(lambda_http::Body::Empty)
            .unwrap()
    }

    fn position(gsi1pk: &str) -> Position {
        let keys = [
            ("gsi1pk", gsi1pk),
            ("gsi1sk", "x"),
            ("pk", "TENANT#a#USER#u"),
            ("sk", "USER"),
        ];
        Position(
            keys.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    #[test]
    fn limit_defaults_to_twenty_and_must_be_one_to_a_hundred() {
        assert_eq!(page_request(&req(""), Index::Gsi1, "P").unwrap().limit, 20);
        assert_eq!(
            page_request(&req("limit=100"), Index::Gsi1, "P")
                .unwrap()
                .limit,
            100
        );
        for bad in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
            assert_eq!(
                page_request(&req(bad), Index::Gsi1, "P")
                    .unwrap_err()
                    .status(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_is_followed_only_within_its_own_partition() {
        let mine = encode(&position("TENANT#a#MEMBERS"));
        let parsed = page_request(
            &req(&format!("cursor={mine}")),
            Index::Gsi1,
            "TENANT#a#MEMBERS",
        )
        .unwrap();
        assert_eq!(parsed.after, Some(position("TENANT#a#MEMBERS")));
        let theirs = page_request(
            &req(&format!("cursor={mine}")),
            Index::Gsi1,
            "TENANT#b#MEMBERS",
        );
        assert_eq!(theirs.unwrap_err().status(), 400);
        assert_eq!(
            page_request(&req("cursor=%%%"), Index::Gsi1, "P")
                .unwrap_err()
                .status(),
            400
        );
        let mut partial = position("TENANT#a#MEMBERS");
        partial.0.remove("sk");
        let partial = encode(&partial);
        let refused = page_request(
            &req(&format!("cursor={partial}")),
            Index::Gsi1,
            "TENANT#a#MEMBERS",
        );
        assert_eq!(
            refused.unwrap_err().status(),
            400,
            "a cursor missing a key attribute"
        );
    }

    #[test]
    fn a_cursor_outside_the_lists_sort_key_condition_is_refused() {
        let sessions = |sk: &str| {
            encode(&Position(
                [("pk", "TENANT#a#USER#u"), ("sk", sk)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ))
        };
        let query = || {
            Query::partition(Index::Primary, "TENANT#a#USER#u")
                .sort(crate::store::SortKey::BeginsWith("SESSION#".into()))
        };
        let inside = sessions("SESSION#ses_1");
        assert!(paged(&req(&format!("cursor={inside}")), query()).is_ok());
        for outside in ["USER", "ZZZ"] {
            let cursor = sessions(outside);
            assert_eq!(
                paged(&req(&format!("cursor={cursor}")), query())
                    .unwrap_err()
                    .status(),
                400,
                "{outside}"
            );
        }
    }
}
