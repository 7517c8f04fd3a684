//! The lifecycle hooks of a WebSocket route (crossws' `defineHooks`): `upgrade`, `open`, `message`,
//! `close`, `error`.
//!
//! Implement [`Hooks`] on your own type, or build one from closures with [`define_hooks`]. Define only
//! the hooks you need; the others do nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::Response;

use super::upgrade::{Accept, IntoUpgradeResult, UpgradeRequest};
use crate::error::{BoxError, CloseEvent, Error};
use crate::{Message, Peer};

/// What `open`, `message` and `close` return. An `Err` reaches the `error` hook and closes the peer
/// with 1011.
pub type HookResult = Result<(), BoxError>;

/// The hooks of one WebSocket route. Every method has a default that does nothing (and `upgrade`
/// accepts).
///
/// The hooks of one peer run one at a time, in order: `message` is not called again until the previous
/// call returned, which is also backpressure on that peer's socket. Different peers run concurrently.
pub trait Hooks: Send + Sync + 'static {
    /// Called with the HTTP request before the connection is accepted. Return `Err(response)` to refuse
    /// (e.g. 401), or an [`Accept`] with a context, a subprotocol or extra headers.
    fn upgrade(&self, request: UpgradeRequest) -> impl Future<Output = Result<Accept, Response>> + Send {
        let _ = request;
        async { Ok(Accept::new()) }
    }

    /// The connection is open.
    fn open(&self, peer: Peer) -> impl Future<Output = HookResult> + Send {
        let _ = peer;
        async { Ok(()) }
    }

    /// A complete message arrived.
    fn message(&self, peer: Peer, message: Message) -> impl Future<Output = HookResult> + Send {
        let _ = (peer, message);
        async { Ok(()) }
    }

    /// The connection is closed (cleanly or not); `close` says how.
    fn close(&self, peer: Peer, close: CloseEvent) -> impl Future<Output = HookResult> + Send {
        let _ = (peer, close);
        async { Ok(()) }
    }

    /// A protocol error, an I/O error, or an error (or panic) from another hook.
    fn error(&self, peer: Peer, error: Error) -> impl Future<Output = ()> + Send {
        let _ = (peer, error);
        async {}
    }
}

/// What `open`, `message` and `close` closures may return: `()` or `Result<(), E>` for any error type.
pub trait IntoHookResult {
    /// Converts to a `HookResult`.
    fn into_hook_result(self) -> HookResult;
}

impl IntoHookResult for () {
    fn into_hook_result(self) -> HookResult {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHookResult for Result<(), E> {
    fn into_hook_result(self) -> HookResult {
        self.map_err(Into::into)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type UpgradeFn = dyn Fn(UpgradeRequest) -> BoxFuture<Result<Accept, Response>> + Send + Sync;
type PeerFn = dyn Fn(Peer) -> BoxFuture<HookResult> + Send + Sync;
type MessageFn = dyn Fn(Peer, Message) -> BoxFuture<HookResult> + Send + Sync;
type SyncMessageFn = dyn Fn(Peer, Message) -> HookResult + Send + Sync;
type CloseFn = dyn Fn(Peer, CloseEvent) -> BoxFuture<HookResult> + Send + Sync;
type ErrorFn = dyn Fn(Peer, Error) -> BoxFuture<()> + Send + Sync;

/// Hooks built from closures. Start with [`define_hooks`].
///
/// ```
/// use switchboard::{define_hooks, Peer, Message};
///
/// let hooks = define_hooks()
///     .open(|peer: Peer| async move { println!("[ws] open {}", peer.id()) })
///     .message(|peer: Peer, message: Message| async move {
///         if message.text()? == "ping" {
///             peer.send("pong")?;
///         }
///         Ok::<_, switchboard::BoxError>(())
///     });
/// ```
#[derive(Clone, Default)]
pub struct HookSet {
    upgrade: Option<Arc<UpgradeFn>>,
    open: Option<Arc<PeerFn>>,
    message: Option<Arc<MessageFn>>,
    message_sync: Option<Arc<SyncMessageFn>>,
    close: Option<Arc<CloseFn>>,
    error: Option<Arc<ErrorFn>>,
}

/// An empty set of hooks, to add closures to (crossws' and Spry's `defineHooks`).
pub fn define_hooks() -> HookSet {
    HookSet::default()
}

impl HookSet {
    /// Sets the `upgrade` hook. It may return `()`, `Accept`, `Result<Accept, Response>` or
    /// `Result<(), Response>`.
    pub fn upgrade<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(UpgradeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoUpgradeResult,
    {
        self.upgrade = Some(Arc::new(move |req| {
            let fut = hook(req);
            Box::pin(async move { fut.await.into_upgrade_result() })
        }));
        self
    }

    /// Sets the `open` hook.
    pub fn open<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHookResult,
    {
        self.open = Some(Arc::new(move |peer| {
            let fut = hook(peer);
            Box::pin(async move { fut.await.into_hook_result() })
        }));
        self
    }

    /// Sets the `message` hook.
    pub fn message<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Peer, Message) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHookResult,
    {
        self.message = Some(Arc::new(move |peer, message| {
            let fut = hook(peer, message);
            Box::pin(async move { fut.await.into_hook_result() })
        }));
        self.message_sync = None;
        self
    }

    /// Sets the `message` hook to a plain closure, for handlers that never await (echo, publish,
    /// send, broadcast: Switchboard's own calls never block). It runs inline with no future to create
    /// or box, which makes it the cheapest hook per message. Replaces a `message` hook.
    ///
    /// ```
    /// use switchboard::{define_hooks, Message, Peer};
    ///
    /// let hooks = define_hooks().message_sync(|peer: Peer, message: Message| peer.send(message));
    /// ```
    pub fn message_sync<F, R>(mut self, hook: F) -> Self
    where
        F: Fn(Peer, Message) -> R + Send + Sync + 'static,
        R: IntoHookResult,
    {
        self.message_sync = Some(Arc::new(move |peer, message| hook(peer, message).into_hook_result()));
        self.message = None;
        self
    }

    /// Sets the `close` hook.
    pub fn close<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Peer, CloseEvent) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHookResult,
    {
        self.close = Some(Arc::new(move |peer, close| {
            let fut = hook(peer, close);
            Box::pin(async move { fut.await.into_hook_result() })
        }));
        self
    }

    /// Sets the `error` hook.
    pub fn error<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Peer, Error) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.error = Some(Arc::new(move |peer, error| Box::pin(hook(peer, error))));
        self
    }
}

impl Hooks for HookSet {
    fn upgrade(&self, request: UpgradeRequest) -> impl Future<Output = Result<Accept, Response>> + Send {
        let hook = self.upgrade.clone();
        async move {
            match hook {
                Some(hook) => hook(request).await,
                None => Ok(Accept::new()),
            }
        }
    }

    fn open(&self, peer: Peer) -> impl Future<Output = HookResult> + Send {
        let fut = self.open.as_ref().map(|hook| hook(peer));
        async move {
            match fut {
                Some(fut) => fut.await,
                None => Ok(()),
            }
        }
    }

    fn message(&self, peer: Peer, message: Message) -> impl Future<Output = HookResult> + Send {
        let fut = self.message.as_ref().map(|hook| hook(peer, message));
        async move {
            match fut {
                Some(fut) => fut.await,
                None => Ok(()),
            }
        }
    }

    fn close(&self, peer: Peer, close: CloseEvent) -> impl Future<Output = HookResult> + Send {
        let fut = self.close.as_ref().map(|hook| hook(peer, close));
        async move {
            match fut {
                Some(fut) => fut.await,
                None => Ok(()),
            }
        }
    }

    fn error(&self, peer: Peer, error: Error) -> impl Future<Output = ()> + Send {
        let fut = self.error.as_ref().map(|hook| hook(peer, error));
        async move {
            if let Some(fut) = fut {
                fut.await;
            }
        }
    }
}

/// Object-safe form of `Hooks`, so routes with different hook types live in one table.
/// What `DynHooks::message_now` did with a message.
pub(crate) enum Handled {
    /// The synchronous hook ran (its result, or its panic as an error).
    Done(Result<(), Error>),
    /// There is no synchronous hook: call `message` and await it.
    Async(Message),
}

pub(crate) trait DynHooks: Send + Sync + 'static {
    fn upgrade(&self, request: UpgradeRequest) -> BoxFuture<Result<Accept, Response>>;
    fn open(&self, peer: Peer) -> BoxFuture<HookResult>;
    /// Runs a synchronous `message` hook at once, if there is one.
    fn message_now(&self, peer: &Peer, message: Message) -> Handled {
        let _ = peer;
        Handled::Async(message)
    }
    fn message(&self, peer: Peer, message: Message) -> BoxFuture<HookResult>;
    fn close(&self, peer: Peer, close: CloseEvent) -> BoxFuture<HookResult>;
    fn error(&self, peer: Peer, error: Error) -> BoxFuture<()>;
}

/// Wraps a `Hooks` implementation as `DynHooks`.
pub(crate) struct Erased<H>(pub(crate) Arc<H>);

/// The object-safe form of any `Hooks`. A `HookSet` already holds boxed closures and is used as it is,
/// which saves a second boxed future on every hook call.
pub(crate) fn erase<H: Hooks>(hooks: H) -> Arc<dyn DynHooks> {
    let any: Box<dyn std::any::Any> = Box::new(hooks);
    match any.downcast::<HookSet>() {
        Ok(set) => Arc::new(*set),
        Err(other) => match other.downcast::<H>() {
            Ok(hooks) => Arc::new(Erased(Arc::new(*hooks))),
            Err(_) => unreachable!("a Box<dyn Any> made from H downcasts to H"),
        },
    }
}

impl DynHooks for HookSet {
    fn upgrade(&self, request: UpgradeRequest) -> BoxFuture<Result<Accept, Response>> {
        match &self.upgrade {
            Some(hook) => hook(request),
            None => Box::pin(std::future::ready(Ok(Accept::new()))),
        }
    }

    fn open(&self, peer: Peer) -> BoxFuture<HookResult> {
        match &self.open {
            Some(hook) => hook(peer),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn message_now(&self, peer: &Peer, message: Message) -> Handled {
        let Some(hook) = &self.message_sync else { return Handled::Async(message) };
        let peer = peer.clone();
        Handled::Done(match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(peer, message))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Hook { hook: "message", source }),
            Err(panic) => Err(Error::from_panic("message", panic)),
        })
    }

    fn message(&self, peer: Peer, message: Message) -> BoxFuture<HookResult> {
        match &self.message {
            Some(hook) => hook(peer, message),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn close(&self, peer: Peer, close: CloseEvent) -> BoxFuture<HookResult> {
        match &self.close {
            Some(hook) => hook(peer, close),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn error(&self, peer: Peer, error: Error) -> BoxFuture<()> {
        match &self.error {
            Some(hook) => hook(peer, error),
            None => Box::pin(std::future::ready(())),
        }
    }
}

impl<H: Hooks> DynHooks for Erased<H> {
    fn upgrade(&self, request: UpgradeRequest) -> BoxFuture<Result<Accept, Response>> {
        let hooks = self.0.clone();
        Box::pin(async move { hooks.upgrade(request).await })
    }

    fn open(&self, peer: Peer) -> BoxFuture<HookResult> {
        let hooks = self.0.clone();
        Box::pin(async move { hooks.open(peer).await })
    }

    fn message(&self, peer: Peer, message: Message) -> BoxFuture<HookResult> {
        let hooks = self.0.clone();
        Box::pin(async move { hooks.message(peer, message).await })
    }

    fn close(&self, peer: Peer, close: CloseEvent) -> BoxFuture<HookResult> {
        let hooks = self.0.clone();
        Box::pin(async move { hooks.close(peer, close).await })
    }

    fn error(&self, peer: Peer, error: Error) -> BoxFuture<()> {
        let hooks = self.0.clone();
        Box::pin(async move { hooks.error(peer, error).await })
    }
}
