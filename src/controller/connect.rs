//! How a policy reaches Slurm: the agent at `spec.agent.url` with the token from
//! `spec.agent.tokenSecretRef`, or (demo, tests) one fixed client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use super::Error;
use crate::api::MaintenancePolicy;
use crate::api::policy::SecretKeyRef;
use crate::slurm::client::{AgentClient, SlurmClient};

/// Gives the Slurm client of a policy.
pub trait Connector: Send + Sync {
    fn connect<'a>(
        &'a self,
        policy: &'a MaintenancePolicy,
    ) -> BoxFuture<'a, Result<Arc<dyn SlurmClient>, Error>>;
}

/// The same client for every policy.
pub struct FixedConnector(pub Arc<dyn SlurmClient>);

impl Connector for FixedConnector {
    fn connect<'a>(
        &'a self,
        _policy: &'a MaintenancePolicy,
    ) -> BoxFuture<'a, Result<Arc<dyn SlurmClient>, Error>> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Agent clients built from each policy's spec and token Secret, reused while the URL
/// and token stay the same.
pub struct AgentConnector {
    client: Client,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    cache: Mutex<HashMap<(String, String), Arc<AgentClient>>>,
}

impl AgentConnector {
    /// Reads token Secrets through `client`; `ca_pem`/`identity_pem` are used for
    /// `https://` agents.
    pub fn new(
        client: Client,
        timeout: Duration,
        ca_pem: Option<Vec<u8>>,
        identity_pem: Option<Vec<u8>>,
    ) -> Self {
        Self {
            client,
            timeout,
            ca_pem,
            identity_pem,
            cache: Mutex::default(),
        }
    }

    async fn token(&self, policy: &MaintenancePolicy) -> Result<String, Error> {
        let ns = policy
            .namespace()
            .ok_or_else(|| Error::Invalid("policy has no namespace".into()))?;
        secret_token(&self.client, &ns, &policy.spec.agent.token_secret_ref).await
    }
}

/// The token in key `r.key` of Secret `r.name` in `ns`, trimmed; a missing Secret or key,
/// or an empty or non-UTF-8 token, is an [`Error::Token`].
pub(super) async fn secret_token(
    client: &Client,
    ns: &str,
    r: &SecretKeyRef,
) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get_opt(&r.name)
        .await?
        .ok_or_else(|| Error::Token(format!("Secret {ns}/{} not found", r.name)))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.as_bytes().to_vec())
        })
        .ok_or_else(|| Error::Token(format!("Secret {ns}/{} has no key {:?}", r.name, r.key)))?;
    let token = String::from_utf8(bytes).map_err(|_| {
        Error::Token(format!(
            "Secret {ns}/{} key {:?} is not UTF-8",
            r.name, r.key
        ))
    })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Error::Token(format!(
            "Secret {ns}/{} key {:?} is empty",
            r.name, r.key
        )));
    }
    Ok(token)
}

impl Connector for AgentConnector {
    fn connect<'a>(
        &'a self,
        policy: &'a MaintenancePolicy,
    ) -> BoxFuture<'a, Result<Arc<dyn SlurmClient>, Error>> {
        Box::pin(async move {
            let token = self.token(policy).await?;
            let url = policy.spec.agent.url.clone();
            let key = (url.clone(), token.clone());
            if let Some(c) = self.cache.lock().expect("cache lock").get(&key) {
                return Ok(c.clone() as Arc<dyn SlurmClient>);
            }
            let https = url.starts_with("https://");
            let client = AgentClient::with_tls(
                &url,
                &token,
                self.timeout,
                self.ca_pem.as_deref().filter(|_| https),
                self.identity_pem.as_deref().filter(|_| https),
            )?;
            let client = Arc::new(client);
            let mut cache = self.cache.lock().expect("cache lock");
            cache.retain(|(u, _), _| *u != url);
            cache.insert(key, client.clone());
            Ok(client as Arc<dyn SlurmClient>)
        })
    }
}
