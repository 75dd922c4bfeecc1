//! A gRPC `Admin` client authenticated as the bench admin.

use canopy_proto::v1::admin_client::AdminClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct Admin {
    client: AdminClient<Channel>,
    auth: MetadataValue<tonic::metadata::Ascii>,
}

impl Admin {
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self {
            client: AdminClient::new(channel),
            auth: format!("Bearer {token}").parse()?,
        })
    }

    /// A request carrying the admin's bearer token.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }

    pub fn client(&self) -> AdminClient<Channel> {
        self.client.clone()
    }
}
