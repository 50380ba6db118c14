//! The words a product is found by: `?q=` finds products having a word of the name that
//! starts with `q`, whatever the case or accents ("mug" finds "Blue Mug", "cafe" finds
//! "Café Crème"). Names and queries are folded the same way: compatibility-decomposed
//! (NFKD), accents and other combining marks dropped, lower-cased, split into runs of
//! letters and digits. The catalogue keeps one index entry per distinct word of a name,
//! in the transaction that writes the product, and a search is one index query on a word
//! prefix: never a scan.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization as _;

/// The most words of a name that are indexed: each costs one index item per product.
pub const MAX_WORDS: usize = 16;

/// Folds `text` into its words: no accents, lower case, letters and digits only.
fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The distinct words a product name is found by, in order of first appearance, at most
/// [`MAX_WORDS`].
pub fn index_words(name: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for word in words(name) {
        if !seen.contains(&word) && seen.len() < MAX_WORDS {
            seen.push(word);
        }
    }
    seen
}

/// The prefix a query `q` looks up: its first word, folded as names are; `None` when it
/// holds no letter or digit. A query of several words is looked up by its first.
pub fn query_prefix(q: &str) -> Option<String> {
    words(q).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(query: &str, name: &str) -> bool {
        let prefix = query_prefix(query).expect("a word");
        index_words(name).iter().any(|w| w.starts_with(&prefix))
    }

    #[test]
    fn a_word_prefix_finds_a_name_whatever_its_case_or_accents() {
        assert!(finds("mug", "Blue Mug"));
        assert!(finds("MU", "Blue Mug"));
        assert!(finds("cafe", "Café Crème"));
        assert!(finds("crem", "Café Crème"));
        assert!(finds("CAFÉ", "cafe au lait"));
        assert!(
            !finds("ug", "Blue Mug"),
            "a prefix of a word, not any substring"
        );
        assert!(!finds("tea", "Blue Mug"));
    }

    #[test]
    fn names_fold_to_distinct_words_of_letters_and_digits() {
        assert_eq!(
            index_words("Blue-Mug, blue MUG (350ml)"),
            ["blue", "mug", "350ml"]
        );
        assert_eq!(index_words("Ｆｕｌｌ－width Ⅳ"), ["full", "width", "iv"]);
        assert_eq!(index_words("  ... "), Vec::<String>::new());
        let long: String = (0..40).map(|n| format!("w{n} ")).collect();
        assert_eq!(index_words(&long).len(), MAX_WORDS);
    }

    #[test]
    fn a_query_without_letters_or_digits_looks_nothing_up() {
        assert_eq!(query_prefix("  -- "), None);
        assert_eq!(query_prefix("Crème brûlée"), Some("creme".to_owned()));
    }
}
