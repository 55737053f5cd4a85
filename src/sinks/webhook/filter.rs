//! Endpoint filters: AMQP topic patterns over the routing keys (`work_order.*`, `#.deleted`):
//! words separated by `.`, `*` matches exactly one word, `#` zero or more (RabbitMQ's topic
//! exchange rules, <https://www.rabbitmq.com/tutorials/tutorial-five-python>).

/// Checks one pattern; the error says what is wrong with it.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err("a pattern is 1 to 255 characters".into());
    }
    for word in pattern.split('.') {
        let ok = word == "*"
            || word == "#"
            || (!word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        if !ok {
            return Err(format!(
                "{pattern:?}: each dot-separated word is *, # or lower-case letters, digits and _"
            ));
        }
    }
    Ok(())
}

/// Whether `key` (`invoice.created`) matches `pattern`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    match_words(&p, &k)
}

fn match_words(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|skip| match_words(rest, &k[skip..])),
        Some((&w, rest)) => match k.split_first() {
            Some((kw, krest)) => (w == "*" || w == *kw) && match_words(rest, krest),
            None => false,
        },
    }
}

/// Whether any of `patterns` matches `key`.
pub fn accepts(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| matches(p, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_follow_rabbitmq() {
        assert!(matches("#", "work_order.created"));
        assert!(matches("work_order.*", "work_order.deleted"));
        assert!(!matches("work_order.*", "invoice.deleted"));
        assert!(matches("*.deleted", "invoice.deleted"));
        assert!(matches("#.deleted", "invoice.deleted"));
        assert!(matches("invoice.#", "invoice.created"));
        assert!(matches("invoice.created", "invoice.created"));
        assert!(!matches("invoice.created", "invoice.updated"));
        assert!(!matches("*", "invoice.created"));
        assert!(!matches("invoice.*.x", "invoice.created"));
        assert!(validate("work_order.*").is_ok());
        assert!(validate("Work_Order.*").is_err());
        assert!(validate("a..b").is_err());
        assert!(validate("").is_err());
    }
}
