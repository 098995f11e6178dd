//! Request input turned into validated values or a [`QueryError`].

use crate::QueryError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ordo_domain::spec::TenantId;

/// The tenant a request reads as: `X-Ordo-Tenant`, default `default` (the same rule as the
/// command API, see [`ordo_common::http::tenant`]).
pub struct Tenant(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, QueryError> {
        ordo_common::http::tenant(&parts.headers)
            .map(Tenant)
            .map_err(QueryError::BadRequest)
    }
}

/// A query string as name/value pairs, checked against the names a route accepts: an unknown
/// or misspelt parameter is a 400, never silently ignored. (axum's `Query` cannot take a
/// repeated parameter such as `label`, and its errors do not say what to fix.)
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub fn parse(query: Option<&str>, accepted: &[&str]) -> Result<Self, QueryError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !accepted.contains(&k.as_str())) {
            return Err(QueryError::BadRequest(format!(
                "unknown query parameter {name:?}; this route accepts {}",
                accepted.join(", ")
            )));
        }
        Ok(Self { pairs })
    }

    /// Every value of a repeatable parameter, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter given at most once.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, QueryError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(QueryError::BadRequest(format!(
                "query parameter {name} is given more than once; give it once"
            )));
        }
        Ok(first)
    }

    /// A non-negative integer parameter.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, QueryError> {
        self.single(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    QueryError::BadRequest(format!(
                        "query parameter {name} must be a non-negative integer (got {v:?})"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_unknown_and_numeric_parameters() {
        let params =
            QueryParams::parse(Some("label=a%3Db&label=c=d&limit=5"), &["label", "limit"]).unwrap();
        assert_eq!(params.all("label").collect::<Vec<_>>(), ["a=b", "c=d"]);
        assert_eq!(params.u64("limit").unwrap(), Some(5));
        assert!(params.single("label").is_err());
        assert!(QueryParams::parse(Some("limt=5"), &["limit"]).is_err());
        let params = QueryParams::parse(Some("limit=-1"), &["limit"]).unwrap();
        assert!(params.u64("limit").is_err());
        assert!(QueryParams::parse(None, &[])
            .unwrap()
            .u64("x")
            .unwrap()
            .is_none());
    }
}
