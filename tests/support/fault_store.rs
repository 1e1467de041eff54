//! Fault injection as a wrapper around a real store, passed in by tests (never a flag of the
//! binary): [`PanicOnTopic`] makes the partition writer panic while committing a batch that
//! holds an event of one topic, and a read of that topic's events panic in the handler;
//! everything else goes to the wrapped store.

use std::sync::Arc;

use async_trait::async_trait;
use uts_aggregator::store::{
    CommitBatch, PageLimit, PartitionWriter, Store, StoreError, StoredEvent, TopicInfo, Totals,
};

#[derive(Debug)]
pub(crate) struct PanicOnTopic {
    inner: Arc<dyn Store>,
    topic: String,
}

impl PanicOnTopic {
    pub(crate) fn wrap(topic: &str) -> impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send {
        let topic = topic.to_string();
        move |inner| Arc::new(Self { inner, topic })
    }
}

struct PanickingWriter {
    inner: Box<dyn PartitionWriter>,
    topic: String,
}

#[async_trait]
impl PartitionWriter for PanickingWriter {
    fn totals(&self) -> Totals {
        self.inner.totals()
    }

    async fn commit_batch(&mut self, batch: &CommitBatch) -> Result<Vec<bool>, StoreError> {
        if batch.events().any(|(event, _)| event.topic == self.topic) {
            panic!("injected fault: a batch holding topic {}", self.topic);
        }
        self.inner.commit_batch(batch).await
    }

    async fn probe(&mut self) -> Result<(), StoreError> {
        self.inner.probe().await
    }

    fn check_present(&self) -> Result<(), StoreError> {
        self.inner.check_present()
    }
}

#[async_trait]
impl Store for PanicOnTopic {
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }

    async fn open_writer(&self, partition: usize) -> Result<Box<dyn PartitionWriter>, StoreError> {
        Ok(Box::new(PanickingWriter {
            inner: self.inner.open_writer(partition).await?,
            topic: self.topic.clone(),
        }))
    }

    async fn topic_page(
        &self,
        partition: usize,
        topic: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if topic == self.topic {
            panic!("injected fault: a read of topic {topic}");
        }
        self.inner.topic_page(partition, topic, after, limit).await
    }

    async fn position_page(
        &self,
        partition: usize,
        after: i64,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.position_page(partition, after, limit).await
    }

    async fn last_seq(&self, partition: usize, topic: &str) -> Result<i64, StoreError> {
        self.inner.last_seq(partition, topic).await
    }

    async fn last_positions(&self) -> Result<Vec<i64>, StoreError> {
        self.inner.last_positions().await
    }

    async fn stored(&self) -> Result<Option<uts_aggregator::store::Stored>, StoreError> {
        self.inner.stored().await
    }

    async fn page(
        &self,
        partition: usize,
        after: Option<(&str, i64)>,
        limit: PageLimit,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.page(partition, after, limit).await
    }

    async fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, StoreError> {
        self.inner.topics_page(after, limit).await
    }

    async fn topic_count(&self) -> Result<u64, StoreError> {
        self.inner.topic_count().await
    }

    async fn shared_totals(&self) -> Result<Option<Vec<Totals>>, StoreError> {
        self.inner.shared_totals().await
    }
}
