//! Who may watch through the relay: whoever the apiserver would let watch the same
//! resource. A bearer token is checked with a TokenReview and its user with a
//! SubjectAccessReview (the delegated authentication and authorization of aggregated
//! API servers, k8s.io/apiserver `pkg/authentication/token` and
//! `pkg/authorization/authorizerfactory`). Each answer is kept for a short while and
//! asked once however many requests want it at the same moment ([`Kept`]): a weftd's
//! four span watches (two resources, list then watch) cost one TokenReview and at most
//! four SubjectAccessReviews, and its reconnects none while the answers last.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::error::Error;
use super::kept::Kept;
use super::Relayed;
use crate::metrics::Metrics;

/// How long an allowed answer is kept (the apiserver's webhook authorizer keeps one
/// 5 minutes; a revoked binding takes effect here within this).
const ALLOWED_FOR: Duration = Duration::from_secs(30);
/// How long a refusal is kept: a token just bound to its role gets in soon.
const REFUSED_FOR: Duration = Duration::from_secs(2);
/// Answers kept at most, of each kind; past it the lapsed ones go.
const KEPT_ANSWERS: usize = 20_000;

/// Why a request is refused: the HTTP status and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub message: String,
}

/// Let in, or refused and why.
type Answer = Result<(), Refusal>;

/// Checks tokens against the apiserver, keeping recent answers.
#[derive(Clone)]
pub struct Gate {
    client: Client,
    /// Who a token is, by the token's digest.
    users: Arc<Kept<Result<UserInfo, Refusal>>>,
    /// Whether a token may use a verb on a resource, by digest of the three.
    access: Arc<Kept<Answer>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// How long an answer is kept: allowed ones longer than refusals.
fn lasts<T>(answer: &Result<T, Refusal>) -> Duration {
    if answer.is_ok() {
        ALLOWED_FOR
    } else {
        REFUSED_FOR
    }
}

impl Gate {
    pub fn new(client: Client, metrics: Metrics) -> Gate {
        Gate {
            client,
            users: Arc::new(Kept::new(KEPT_ANSWERS)),
            access: Arc::new(Kept::new(KEPT_ANSWERS)),
            metrics,
        }
    }

    /// Whether the holder of `authorization` (the request's header) may `verb`
    /// (`list`, `watch`) `relayed`.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        verb: &str,
        relayed: Relayed,
    ) -> Result<Answer, Error> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = authorization.and_then(|header| {
            let (scheme, token) = header.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Err(Refusal {
                code: 401,
                message: "a bearer token is required".into(),
            }));
        };
        let user = self
            .users
            .get_or_try(digest(&[token]), lasts, || self.authenticate(token))
            .await?;
        let user = match user {
            Ok(user) => user,
            Err(refusal) => return Ok(Err(refusal)),
        };
        self.access
            .get_or_try(digest(&[token, verb, relayed.plural()]), lasts, || {
                self.authorize(user, verb, relayed)
            })
            .await
    }

    /// Who the token is, by a TokenReview.
    async fn authenticate(&self, token: &str) -> Result<Result<UserInfo, Refusal>, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = self.create(&review).await?;
        let status = reviewed.status.unwrap_or_default();
        Ok(match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Ok(user),
            _ => Err(Refusal {
                code: 401,
                message: format!(
                    "the token is not valid: {}",
                    status.error.unwrap_or_else(|| "not authenticated".into())
                ),
            }),
        })
    }

    /// Whether `user` may `verb` `relayed`, by a SubjectAccessReview.
    async fn authorize(
        &self,
        user: UserInfo,
        verb: &str,
        relayed: Relayed,
    ) -> Result<Answer, Error> {
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                resource_attributes: Some(ResourceAttributes {
                    group: Some(relayed.api_resource().group),
                    resource: Some(relayed.plural().to_owned()),
                    verb: Some(verb.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let decided = self.create(&access).await?;
        let status = decided.status.unwrap_or_default();
        if status.allowed {
            Ok(Ok(()))
        } else {
            let who = user.username.unwrap_or_default();
            Ok(Err(Refusal {
                code: 403,
                message: format!(
                    "{who} may not {verb} {}.{}{}",
                    relayed.plural(),
                    relayed.api_resource().group,
                    status.reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            }))
        }
    }
}

impl Gate {
    /// Creates a review (cluster-scoped, never stored) and reads back its status.
    async fn create<K>(&self, review: &K) -> Result<K, Error>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        self.metrics
            .relay_reviews
            .with_label_values(&[&K::kind(&())])
            .inc();
        Api::<K>::all(self.client.clone())
            .create(&PostParams::default(), review)
            .await
            .map_err(Error::Review)
    }
}

/// What an answer is kept under: a digest of its parts (never the token itself), each
/// ended by a NUL so no two lists of parts run together alike.
fn digest(parts: &[&str]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize().into()
}
