//! Who may watch through the relay: whoever the apiserver would let watch the same
//! resource. A bearer token is checked with a TokenReview and its user with a
//! SubjectAccessReview (the delegated authentication and authorization of aggregated
//! API servers, k8s.io/apiserver `pkg/authentication/token` and
//! `pkg/authorization/authorizerfactory`), each answer kept for a short while so a
//! weftd's reconnects do not each cost two reviews.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::error::Error;
use super::Relayed;

/// How long an allowed answer is kept (the apiserver's webhook authorizer keeps one
/// 5 minutes; a revoked binding takes effect here within this).
const ALLOWED_FOR: Duration = Duration::from_secs(30);
/// How long a refusal is kept: a token just bound to its role gets in soon.
const REFUSED_FOR: Duration = Duration::from_secs(2);
/// Answers kept at most; past it the oldest go.
const KEPT_ANSWERS: usize = 20_000;

/// Why a request is refused: the HTTP status and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub message: String,
}

/// Let in, or refused and why.
type Answer = Result<(), Refusal>;

/// Answers by [`answer_key`], each with when it lapses.
type Answers = HashMap<[u8; 32], (Answer, Instant)>;

/// Checks tokens against the apiserver, keeping recent answers.
#[derive(Clone)]
pub struct Gate {
    client: Client,
    answers: Arc<Mutex<Answers>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    pub fn new(client: Client) -> Gate {
        Gate {
            client,
            answers: Arc::default(),
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
        let key = answer_key(token, verb, relayed);
        if let Some(answer) = self.kept(&key) {
            return Ok(answer);
        }
        let answer = self.review(token, verb, relayed).await?;
        self.keep(key, answer.clone());
        Ok(answer)
    }

    fn kept(&self, key: &[u8; 32]) -> Option<Answer> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (answer, until) = answers.get(key)?;
        (Instant::now() < *until).then(|| answer.clone())
    }

    fn keep(&self, key: [u8; 32], answer: Answer) {
        let lasts = if answer.is_ok() {
            ALLOWED_FOR
        } else {
            REFUSED_FOR
        };
        let now = Instant::now();
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= KEPT_ANSWERS {
            answers.retain(|_, (_, until)| *until > now);
        }
        if answers.len() < KEPT_ANSWERS {
            answers.insert(key, (answer, now + lasts));
        }
    }

    /// A TokenReview, then a SubjectAccessReview of its user.
    async fn review(&self, token: &str, verb: &str, relayed: Relayed) -> Result<Answer, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = self.create(&review).await?;
        let status = reviewed.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => user,
            _ => {
                return Ok(Err(Refusal {
                    code: 401,
                    message: format!(
                        "the token is not valid: {}",
                        status.error.unwrap_or_else(|| "not authenticated".into())
                    ),
                }))
            }
        };
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
        Api::<K>::all(self.client.clone())
            .create(&PostParams::default(), review)
            .await
            .map_err(Error::Review)
    }
}

/// What an answer is kept under: the token's digest (never the token), verb, resource.
fn answer_key(token: &str, verb: &str, relayed: Relayed) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(token.as_bytes());
    digest.update([0]);
    digest.update(verb.as_bytes());
    digest.update([0]);
    digest.update(relayed.plural().as_bytes());
    digest.finalize().into()
}
