//! `env init`: the routing table (partition key `Domain`, its stream on with
//! new and old images, for `edgeroute watch`) and the state table (`PK`,
//! `SK`), each created if missing; a routing table without a stream gets one.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableDescription, TableStatus,
};

use super::error::EnvError;
use super::request::{unless, IN_USE, NOT_FOUND};
use super::schema::{ROUTING_KEYS, STATE_KEYS};
use super::{Environments, Initialized};

/// How often, and how many times, `init` looks whether a table is ACTIVE.
const ACTIVE_POLL: Duration = Duration::from_millis(100);
const ACTIVE_POLLS: u32 = 600;

impl Environments {
    /// Creates what the commands need: the routing table (partition key
    /// `Domain`, its stream on with new and old images, for `edgeroute
    /// watch`) and the state table, each if missing; turns a missing stream on.
    pub async fn init(&self) -> Result<Initialized, EnvError> {
        let mut done = Initialized::default();
        let routes = &self.tables.routes;
        match self.describe(routes).await? {
            None => {
                self.create_table(routes, ROUTING_KEYS, true).await?;
                done.created.push(routes.clone());
            }
            Some(table) => {
                let keys: Vec<_> =
                    table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
                if keys != ROUTING_KEYS {
                    return Err(EnvError::WrongKeys {
                        table: routes.clone(),
                        expected: "a routing table's partition key is Domain (a string), alone; give another --table",
                    });
                }
                if !table.stream_specification().is_some_and(|s| s.stream_enabled()) {
                    let spec = stream_spec();
                    self.send(&format!("enabling the stream of {routes}"), || {
                        self.client.update_table().table_name(routes).stream_specification(spec.clone()).send()
                    })
                    .await?;
                    done.stream_enabled = true;
                }
            }
        }
        let state = &self.tables.state;
        match self.describe(state).await? {
            None => {
                self.create_table(state, STATE_KEYS, false).await?;
                done.created.push(state.clone());
            }
            Some(table) => {
                // The names only, in the order DescribeTable gives them.
                let keys: Vec<_> = table.key_schema().iter().map(|k| k.attribute_name()).collect();
                if !keys.iter().eq(STATE_KEYS.iter().map(|(name, _)| name)) {
                    return Err(EnvError::WrongKeys {
                        table: state.clone(),
                        expected: "the state table's keys are PK and SK (strings); give another --state-table",
                    });
                }
            }
        }
        for table in [routes, state] {
            self.wait_active(table).await?;
        }
        Ok(done)
    }

    /// The table, or `None` if there is none.
    async fn describe(&self, table: &str) -> Result<Option<TableDescription>, EnvError> {
        let result = self
            .send(&format!("DescribeTable {table}"), || self.client.describe_table().table_name(table).send())
            .await;
        Ok(unless(NOT_FOUND, result)?.and_then(|out| out.table))
    }

    /// Creates `table` with string `keys`, on demand, and with a stream if
    /// asked; a table created meanwhile (by a concurrent init) is fine.
    async fn create_table(&self, table: &str, keys: &[(&str, KeyType)], stream: bool) -> Result<(), EnvError> {
        let result = self
            .send(&format!("CreateTable {table}"), || {
                let mut create = self.client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
                for (name, kind) in keys {
                    create = create
                        .attribute_definitions(
                            AttributeDefinition::builder()
                                .attribute_name(*name)
                                .attribute_type(ScalarAttributeType::S)
                                .build()
                                .expect("name and type are set"),
                        )
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name(*name)
                                .key_type(kind.clone())
                                .build()
                                .expect("name and type are set"),
                        );
                }
                if stream {
                    create = create.stream_specification(stream_spec());
                }
                create.send()
            })
            .await;
        unless(IN_USE, result)?;
        Ok(())
    }

    async fn wait_active(&self, table: &str) -> Result<(), EnvError> {
        for _ in 0..ACTIVE_POLLS {
            if let Some(t) = self.describe(table).await? {
                if t.table_status() == Some(&TableStatus::Active) {
                    return Ok(());
                }
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
        Err(EnvError::NotActive(table.to_owned()))
    }
}

/// The routing table's stream: on, with new and old images.
fn stream_spec() -> StreamSpecification {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .expect("stream_enabled is set")
}
