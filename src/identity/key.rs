//! The typed name of an identity-index entry: one per identifier value. This is
//! the only place the `id:` / `email:` key spelling exists; the Durable Object
//! names and the KV cache keys are both derived from it.

use std::fmt;

use crate::core::identifier::Identifier;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum IndexKey {
    Id(String),
    /// Always the normalised (lowercased) email.
    Email(String),
}

impl IndexKey {
    /// The key for an identifier; `None` for a cio_id, which names its person
    /// directly and needs no index.
    pub fn of(identifier: &Identifier) -> Option<Self> {
        match identifier {
            Identifier::Id(id) => Some(IndexKey::Id(id.clone())),
            Identifier::Email(email) => Some(IndexKey::Email(email.clone())),
            Identifier::CioId(_) => None,
        }
    }

    /// Every key a person with these identifiers owns.
    pub fn all_of(id: Option<&str>, email: Option<&str>) -> Vec<Self> {
        id.map(|id| IndexKey::Id(id.to_owned()))
            .into_iter()
            .chain(email.map(|e| IndexKey::Email(e.to_owned())))
            .collect()
    }
}

/// `id:<id>` or `email:<email>`: the index object's name.
impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexKey::Id(id) => write!(f, "id:{id}"),
            IndexKey::Email(email) => write!(f, "email:{email}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_once() {
        let id = IndexKey::of(&Identifier::Id("7".into())).unwrap();
        assert_eq!(id.to_string(), "id:7");
        let email = IndexKey::of(&Identifier::Email("a@b.co".into())).unwrap();
        assert_eq!(email.to_string(), "email:a@b.co");
        assert_eq!(IndexKey::of(&Identifier::CioId("ab".into())), None);
        assert_eq!(IndexKey::all_of(Some("7"), Some("a@b.co")), vec![id, email]);
    }
}
