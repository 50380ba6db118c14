//! Search: the products of a shop in whose name every word of the query starts a word.
//! See `crate::domain::search` for how names and queries are folded, and
//! `crate::repo::products` for the word index.

use crate::context::AppContext;
use crate::domain::search::found_by;
use crate::domain::{ProductId, TenantId};
use crate::repo::products::{self, Product};
use crate::store::{Consistency, Index, Position, Query, StoreError};

/// The most index pages one search reads to fill a page of results.
const SEARCH_ROUNDS: usize = 5;
/// How many index entries a search reads per round after the first.
const SEARCH_READ_AHEAD: usize = 100;

/// A page of search results.
pub struct Found {
    pub products: Vec<Product>,
    pub next: Option<Position>,
}

/// The products of a shop found by `terms`, a page at a time. `query` is the paged index
/// query of `lookup`, the longest term (the most selective), with the caller's limit and
/// cursor; the other terms are checked on each entry, which carries the name's words.
/// Entries are read in word order, a few index pages at most per call (so a query of
/// several words can answer a short page with a cursor to go on from), and a product whose
/// name has several words starting with the term is listed once, at the first of them.
/// Then one batch read fetches the products.
#[tracing::instrument(skip_all, fields(terms = terms.len()))]
pub async fn search(
    ctx: &AppContext,
    tenant_id: &TenantId,
    terms: &[String],
    lookup: &str,
    query: Query,
) -> Result<Found, StoreError> {
    let table = ctx.table.as_ref();
    let want = query.limit;
    let mut query = query;
    let mut ids: Vec<ProductId> = Vec::new();
    let mut next = None;
    'rounds: for round in 0..SEARCH_ROUNDS {
        let page = table.query(query.clone()).await?;
        let count = page.items.len();
        for (n, item) in page.items.iter().enumerate() {
            let entry: products::WordEntry = item.record()?;
            let word = products::entry_word(item).unwrap_or_default();
            // Listed at the first of its words that starts with the term, and only then.
            let first_match = !entry
                .words
                .iter()
                .any(|w| w.as_str() < word && w.starts_with(lookup));
            if first_match && found_by(&entry.words, terms) && !ids.contains(&entry.product_id) {
                ids.push(entry.product_id);
            }
            let at_end = n + 1 == count && page.next.is_none();
            if ids.len() == want {
                next = (!at_end).then(|| item.position(Index::Gsi1));
                break 'rounds;
            }
        }
        match page.next {
            None => {
                next = None;
                break;
            }
            Some(position) if round + 1 == SEARCH_ROUNDS => next = Some(position),
            Some(position) => {
                query = query
                    .after(Some(position))
                    .limit(SEARCH_READ_AHEAD.max(want));
            }
        }
    }
    // Eventually consistent, at half the read capacity: the index that found these ids is
    // itself eventually consistent. A product deleted since is left out.
    let products = products::get_many(table, tenant_id, &ids, Consistency::Eventual)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok(Found { products, next })
}
