//! Integration tests of the pipeline: a fake MQTT transport plays the agents' side, and
//! librdkafka's mock cluster (a real Kafka-protocol broker in this process) plays Kafka.

mod pipeline {
    pub mod bulkdata;
    pub mod crash;
    pub mod kafka;
    pub mod kafka_lost;
    pub mod log_store;
    pub mod outage;
    pub mod requests;
    pub mod routes;
    pub mod support;
}
