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
/// The longest a word is indexed (and a query's word looked up), in bytes: a word is part
/// of two keys, and DynamoDB's sort keys hold at most 1024 bytes. Longer words are cut
/// there (at a character boundary), names and queries alike, so prefixes still match.
pub const MAX_WORD_BYTES: usize = 200;

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
        .map(|word| {
            let mut end = word.len().min(MAX_WORD_BYTES);
            while !word.is_char_boundary(end) {
                end -= 1;
            }
            word[..end].to_owned()
        })
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

/// The most words of a query that count.
pub const MAX_QUERY_TERMS: usize = 8;

/// The word prefixes a query `q` asks for, folded as names are: distinct, at most
/// [`MAX_QUERY_TERMS`], empty when it holds no letter or digit. A product is found when
/// every one of them starts some word of its name.
pub fn query_terms(q: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in words(q) {
        if !terms.contains(&word) && terms.len() < MAX_QUERY_TERMS {
            terms.push(word);
        }
    }
    terms
}

/// Whether a name of these (folded) words is found by every term.
pub fn found_by(words: &[String], terms: &[String]) -> bool {
    terms
        .iter()
        .all(|term| words.iter().any(|word| word.starts_with(term.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(query: &str, name: &str) -> bool {
        let terms = query_terms(query);
        assert!(!terms.is_empty());
        found_by(&index_words(name), &terms)
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
        // 200 characters that each fold to 17 bytes (NFKD of a squared unit sign).
        let wide = "㌖".repeat(200);
        let words = index_words(&wide);
        assert!(words[0].len() <= MAX_WORD_BYTES, "{}", words[0].len());
        assert!(
            query_terms(&wide)[0] == words[0],
            "a query folds the same way"
        );
    }

    #[test]
    fn a_query_without_letters_or_digits_looks_nothing_up() {
        assert!(query_terms("  -- ").is_empty());
        assert_eq!(query_terms("Crème brûlée crème"), ["creme", "brulee"]);
    }

    #[test]
    fn every_word_of_a_query_must_start_a_word_of_the_name_in_any_order() {
        assert!(finds("mug blue", "Blue Mug"));
        assert!(finds("bl m", "Blue Mug"));
        assert!(!finds("blue cup", "Blue Mug"));
    }
}
