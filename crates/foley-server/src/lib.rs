//! HTTP front of foley: inference.sh-compatible and Kling-style routes over a durable task queue,
//! file store, webhooks, auth, metrics and the web page. Calls the pipeline; never model internals.
