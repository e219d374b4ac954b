//! The connection the CLI verbs share: a `kube` client built from the kubeconfig, the
//! server's discovery, and the few REST calls the verbs make, with objects kept as JSON
//! (unknown fields and the server's field order survive).

use std::path::{Path, PathBuf};

use futures::{AsyncBufRead, Stream, StreamExt as _};
use http::header::{HeaderValue, ACCEPT};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::core::{Request, Status, WatchEvent};
use serde_json::Value;
use thiserror::Error;

use super::discovery::{ApiResource, Discovery, DiscoveryError};

/// What `kubectl get` sends: a server-side `Table`, else plain JSON.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "no kubeconfig: set KUBECONFIG, write ~/.kube/config, or start `wkube server` (it \
         writes {0})"
    )]
    NoKubeconfig(PathBuf),
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    /// Boxed: a `Status` is large, and every result of the client carries this error type.
    #[error(transparent)]
    Server(Box<ServerError>),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("{0}")]
    Transport(kube::Error),
}

impl From<kube::Error> for ClientError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => ClientError::Server(Box::new(ServerError {
                status: *status,
                context: None,
            })),
            other => ClientError::Transport(other),
        }
    }
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Server(e) if e.status.reason == "NotFound")
    }

    /// Prefixes a server error's message the way kubectl does (`error when creating
    /// "FILE": ...`); other errors stay as they are.
    pub fn when(self, context: impl Into<String>) -> Self {
        match self {
            ClientError::Server(mut e) => {
                e.context = Some(context.into());
                ClientError::Server(e)
            }
            other => other,
        }
    }
}

/// A `Status` the server answered with, printed as kubectl prints it.
#[derive(Debug, Error)]
pub struct ServerError {
    pub status: Status,
    pub context: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status.reason.as_str() {
            "" => write!(f, "Error from server: ")?,
            reason => write!(f, "Error from server ({reason}): ")?,
        }
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        f.write_str(&self.status.message)
    }
}

/// Label and field selectors of a list, delete or watch.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: Option<String>,
    pub fields: Option<String>,
}

impl Selectors {
    fn list_params(&self) -> ListParams {
        ListParams {
            label_selector: self.labels.clone(),
            field_selector: self.fields.clone(),
            ..ListParams::default()
        }
    }
}

/// The kubeconfig the CLI uses: `--kubeconfig`, else `$KUBECONFIG` (a list of files, merged),
/// else `~/.kube/config`, else the one a local `wkube server` wrote into its data dir.
fn load_kubeconfig(explicit: Option<&Path>) -> Result<Kubeconfig, ClientError> {
    if let Some(path) = explicit {
        return Ok(Kubeconfig::read_from(path)?);
    }
    if let Some(merged) = Kubeconfig::from_env()? {
        return Ok(merged);
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
    let server = crate::default_data_dir().join("kubeconfig");
    match home
        .into_iter()
        .chain([server.clone()])
        .find(|p| p.exists())
    {
        Some(path) => Ok(Kubeconfig::read_from(path)?),
        None => Err(ClientError::NoKubeconfig(server)),
    }
}

/// How long `cluster status` waits for each member.
pub const MEMBER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct Cluster {
    client: kube::Client,
    /// The kubeconfig context's namespace, `default` when it names none.
    pub default_namespace: String,
    pub discovery: Discovery,
}

impl Cluster {
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, ClientError> {
        let kubeconfig = load_kubeconfig(kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config)?;
        let discovery = Discovery::run(&client).await?;
        Ok(Cluster {
            client,
            default_namespace,
            discovery,
        })
    }

    /// A request to the member at `server` (default: the kubeconfig's) with the kubeconfig's
    /// credentials, bounded in time so that a member that is down shows as an error rather
    /// than a hang. For wkube's member endpoints (see `control::api::cluster`).
    pub async fn member_request(
        kubeconfig: Option<&Path>,
        server: Option<&str>,
        method: http::Method,
        path: &str,
        read_timeout: std::time::Duration,
    ) -> Result<Value, ClientError> {
        let http_error = |e: http::Error| ClientError::Transport(kube::Error::HttpError(e));
        let kubeconfig = load_kubeconfig(kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        if let Some(url) = server {
            config.cluster_url = url.parse().map_err(|e| http_error(http::Error::from(e)))?;
        }
        config.connect_timeout = Some(MEMBER_TIMEOUT);
        config.read_timeout = Some(read_timeout);
        let client = kube::Client::try_from(config)?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Vec::new());
        Ok(client
            .request::<Value>(request.map_err(http_error)?)
            .await?)
    }

    /// `/version`, as raw JSON.
    pub async fn server_version(&self) -> Result<Value, ClientError> {
        self.send(http::Request::get("/version").body(Vec::new()))
            .await
    }

    async fn send(
        &self,
        request: Result<http::Request<Vec<u8>>, impl Into<RequestError>>,
    ) -> Result<Value, ClientError> {
        let request = request.map_err(|e| ClientError::Transport(e.into().0))?;
        Ok(self.client.request::<Value>(request).await?)
    }

    async fn send_table(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<Value, ClientError> {
        self.send(request.map(|mut r| {
            r.headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(TABLE_ACCEPT));
            r
        }))
        .await
    }

    pub async fn get(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        let req = Request::new(res.path(ns)).get(name, &Default::default());
        self.send(req).await
    }

    /// One object as a one-row `Table`.
    pub async fn get_table(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        let req = Request::new(res.path(ns)).get(name, &Default::default());
        self.send_table(req).await
    }

    /// The list object; `ns: None` lists every namespace.
    pub async fn list(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        sel: &Selectors,
    ) -> Result<Value, ClientError> {
        self.send(Request::new(res.path(ns)).list(&sel.list_params()))
            .await
    }

    pub async fn list_table(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        sel: &Selectors,
    ) -> Result<Value, ClientError> {
        self.send_table(Request::new(res.path(ns)).list(&sel.list_params()))
            .await
    }

    /// Watch events from `resource_version` on; with `table`, each event's object is a
    /// one-row `Table`.
    pub async fn watch(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        sel: &Selectors,
        resource_version: &str,
        table: bool,
    ) -> Result<impl Stream<Item = Result<WatchEvent<Value>, ClientError>>, ClientError> {
        let params = WatchParams {
            label_selector: sel.labels.clone(),
            field_selector: sel.fields.clone(),
            ..WatchParams::default()
        };
        let mut req = Request::new(res.path(ns))
            .watch(&params, resource_version)
            .map_err(|e| ClientError::Transport(kube::Error::BuildRequest(e)))?;
        if table {
            req.headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(TABLE_ACCEPT));
        }
        let events = self.client.request_events::<Value>(req).await?;
        Ok(events.map(|e| e.map_err(ClientError::from)))
    }

    pub async fn create(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value, ClientError> {
        let params = PostParams {
            dry_run,
            field_manager: None,
        };
        let body = serde_json::to_vec(object).expect("a Value always serializes");
        self.send(Request::new(res.path(ns)).create(&params, body))
            .await
    }

    /// A strategic merge patch (`application/strategic-merge-patch+json`).
    pub async fn patch(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Value, ClientError> {
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let req = Request::new(res.path(ns)).patch(name, &params, &Patch::Strategic(patch));
        self.send(req).await
    }

    pub async fn delete(
        &self,
        res: &ApiResource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        self.send(Request::new(res.path(ns)).delete(name, &DeleteParams::default()))
            .await
    }

    /// The pods of `ns` as a typed API, for the stream subresources (`exec`, `attach`).
    pub fn pods(&self, ns: &str) -> kube::Api<k8s_openapi::api::core::v1::Pod> {
        kube::Api::namespaced(self.client.clone(), ns)
    }

    /// Opens the WebSocket stream `request` asks for (`exec`, `attach`).
    pub async fn upgrade(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<kube::client::Connection, ClientError> {
        Ok(self.client.connect(request).await?)
    }

    /// The body of a GET on `path_and_query`, streamed (`logs -f`).
    pub async fn stream(&self, path_and_query: &str) -> Result<impl AsyncBufRead, ClientError> {
        let req = http::Request::get(path_and_query)
            .body(Vec::new())
            .map_err(|e| ClientError::Transport(kube::Error::HttpError(e)))?;
        Ok(self.client.request_stream(req).await?)
    }
}

/// The two request-building error types, folded into `kube::Error`.
struct RequestError(kube::Error);

impl From<http::Error> for RequestError {
    fn from(e: http::Error) -> Self {
        RequestError(kube::Error::HttpError(e))
    }
}

impl From<kube::core::request::Error> for RequestError {
    fn from(e: kube::core::request::Error) -> Self {
        RequestError(kube::Error::BuildRequest(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_print_like_kubectl() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 404, "reason": "NotFound",
            "message": "pods \"x\" not found",
        }))
        .unwrap();
        let e = ClientError::from(kube::Error::Api(Box::new(status)));
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert_eq!(
            e.when("error when creating \"f.yaml\"").to_string(),
            "Error from server (NotFound): error when creating \"f.yaml\": pods \"x\" not found"
        );
    }
}
