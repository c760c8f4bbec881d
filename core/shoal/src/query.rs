//! Queries from the async API, as Serf's `query`: ask the members a filter selects, and collect
//! their acks and responses until a deadline. The protocol side is `shoal_core::node::queries`.

use std::time::Duration;

use shoal_core::{Event, Inquiry, MemberFilter, NodeId, QueryId};

use super::{Addr, Cluster, ClusterError, EventStream};

/// Which members a query asks, and for how long.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct QueryParams {
    /// Members whose name and tags match (states are ignored: a member answers for itself, and to
    /// itself it is alive). The default asks every member, ourselves included.
    pub filter: MemberFilter,
    /// How long members may answer; `None`: [`Cluster::default_query_timeout`].
    pub timeout: Option<Duration>,
}

impl QueryParams {
    /// Every member, for the default time.
    pub fn new() -> Self {
        QueryParams::default()
    }

    /// Only the members `filter` selects.
    pub fn filter(mut self, filter: MemberFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Answers are taken for `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// One answer to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    /// The member was selected and received the query.
    Ack(NodeId),
    /// The member's response.
    Response(NodeId, Vec<u8>),
}

/// Everything a query collected by its deadline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryOutcome {
    /// Members that acked, in the order the acks came.
    pub acks: Vec<NodeId>,
    /// Members' responses, in the order they came.
    pub responses: Vec<(NodeId, Vec<u8>)>,
}

/// The answers to one of our queries as they arrive, from [`Cluster::query`]; ends at the deadline.
#[derive(Debug)]
pub struct QueryResponses {
    id: QueryId,
    events: EventStream,
    done: bool,
}

impl QueryResponses {
    /// The query, as the protocol names it.
    pub fn id(&self) -> QueryId {
        self.id
    }

    /// The next ack or response, or `None` at the deadline (or when the member shuts down).
    pub async fn next(&mut self) -> Option<QueryAnswer> {
        while !self.done {
            match self.events.next().await? {
                Event::QueryAck { id, from } if id == self.id => return Some(QueryAnswer::Ack(from)),
                Event::QueryResponse { id, from, payload } if id == self.id => {
                    return Some(QueryAnswer::Response(from, payload))
                }
                Event::QueryDone { id, .. } if id == self.id => self.done = true,
                _ => {}
            }
        }
        None
    }

    /// Waits for the deadline and returns every ack and response.
    pub async fn collect(mut self) -> QueryOutcome {
        let mut out = QueryOutcome::default();
        while let Some(answer) = self.next().await {
            match answer {
                QueryAnswer::Ack(from) => out.acks.push(from),
                QueryAnswer::Response(from, payload) => out.responses.push((from, payload)),
            }
        }
        out
    }
}

impl Cluster {
    /// Asks the members `params` selects (every member by default, ourselves included) and
    /// returns their answers as they come: each selected member acks at once, and its
    /// application may respond (`ClusterEvent::Query`, answered with [`Cluster::respond`]). Ends
    /// at the deadline. The query must fit one packet. Serf's `query`.
    ///
    /// ```no_run
    /// # async fn f(cluster: shoal::Cluster) -> Result<(), shoal::ClusterError> {
    /// use shoal::{MemberFilter, QueryParams};
    /// let web = QueryParams::new().filter(MemberFilter::new().tag("role", "web"));
    /// let outcome = cluster.query("version", b"", web)?.collect().await;
    /// println!("{} acked, {} answered", outcome.acks.len(), outcome.responses.len());
    /// # Ok(()) }
    /// ```
    pub fn query(&self, topic: &str, payload: &[u8], params: QueryParams) -> Result<QueryResponses, ClusterError> {
        // Subscribed first: the answers (our own among them) come after the query starts.
        let events = self.events();
        let timeout = params.timeout.unwrap_or_else(|| self.default_query_timeout());
        let id = self.command(|n, now| n.query(now, topic, payload, &params.filter, timeout))?;
        Ok(QueryResponses { id: id.map_err(ClusterError::Command)?, events, done: false })
    }

    /// Answers a query this member received (`ClusterEvent::Query { inquiry, .. }`), once, before
    /// its timeout runs out. `ClusterError::Command(CommandError::QueryClosed)` when it is over or
    /// answered already.
    pub fn respond(&self, inquiry: &Inquiry<Addr>, payload: &[u8]) -> Result<(), ClusterError> {
        self.command(|n, now| n.respond(now, inquiry, payload))?.map_err(ClusterError::Command)
    }

    /// The timeout of a query without one: 16 gossip intervals times `ceil(log10(n + 1))` for a
    /// cluster of `n` members (at least one), time for gossip to reach everyone and for answers
    /// to come back, as Serf computes its own (`shoal_core::Node::default_query_timeout`).
    pub fn default_query_timeout(&self) -> Duration {
        self.read(|n| n.default_query_timeout())
    }
}
