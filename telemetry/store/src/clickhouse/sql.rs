//! [`Sql`]: query text with its `?` binds kept in order, so composed fragments
//! can never bind values to the wrong placeholder.

use clickhouse::query::Query;
use clickhouse::Client;

/// A bound value.
#[derive(Clone, Debug)]
pub(crate) enum Bind {
    U32(u32),
    U64(u64),
    Str(String),
    Strs(Vec<String>),
    U32s(Vec<u32>),
    U64s(Vec<u64>),
}

/// Query text and its binds, in placeholder order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sql {
    text: String,
    binds: Vec<Bind>,
}

/// ClickHouse's default `max_query_size`: longer texts (large identity maps)
/// raise the setting for that query.
const DEFAULT_MAX_QUERY_SIZE: usize = 256 * 1024;

impl Sql {
    /// Text without binds. It must not contain `?`.
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends text without binds.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a `?` bound to `value`.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.text.push('?');
        self.binds.push(value);
        self
    }

    /// Appends another fragment with its binds.
    pub(crate) fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
        self
    }

    /// The text with `?` placeholders (for tests and logs).
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// A rough upper bound of the text's size once binds are inlined.
    fn inlined_len(&self) -> usize {
        let binds: usize = self
            .binds
            .iter()
            .map(|bind| match bind {
                Bind::U32(_) | Bind::U64(_) => 20,
                Bind::Str(text) => 2 * text.len() + 2,
                Bind::Strs(texts) => texts.iter().map(|t| 2 * t.len() + 3).sum::<usize>() + 2,
                Bind::U32s(values) => 11 * values.len() + 2,
                Bind::U64s(values) => 21 * values.len() + 2,
            })
            .sum();
        self.text.len() + binds
    }

    /// The crate's query with every bind applied in order.
    pub(crate) fn into_query(self, client: &Client) -> Query {
        let size = self.inlined_len();
        let mut query = client.query(&self.text);
        if size + 1024 > DEFAULT_MAX_QUERY_SIZE {
            query = query.with_setting("max_query_size", (size + 64 * 1024).to_string());
        }
        for bind in self.binds {
            query = match bind {
                Bind::U32(value) => query.bind(value),
                Bind::U64(value) => query.bind(value),
                Bind::Str(value) => query.bind(value),
                Bind::Strs(values) => query.bind(values),
                Bind::U32s(values) => query.bind(values),
                Bind::U64s(values) => query.bind(values),
            };
        }
        query
    }
}
