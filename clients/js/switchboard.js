// switchboard.js: fritz2's WebSocket sessions and store sync for the web, on Switchboard's
// protocols. One dependency-free ES module; see switchboard.d.ts for the API and README.md for a
// tour. Browsers use their own WebSocket; elsewhere (Node) give one with `socket.webSocket(Impl)`.

/** The subprotocol of store sync (docs/sync-protocol.md). */
export const SYNC_PROTOCOL = "switchboard.sync.v1";

// ---------------------------------------------------------------------------------------------
// Errors (the seed's SendException, CloseException, ConnectionException)

/** A message could not be sent: the session is closed (by either side), closing, or its queue is full. */
export class SendError extends Error {
  /**
   * @param {string} message
   * @param {{kind: "closed" | "closing" | "queue-full", code?: number, reason?: string}} details
   */
  constructor(message, { kind, code = null, reason = "" }) {
    super(message);
    this.name = "SendError";
    this.kind = kind;
    this.code = code;
    this.reason = reason;
  }
}

/** `close(code, reason)` was given what a browser refuses: a code that is not 1000 or 3000-4999, or a reason over 123 UTF-8 bytes. */
export class CloseError extends Error {
  constructor(message) {
    super(message);
    this.name = "CloseError";
  }
}

/** The WebSocket could not even be created (a bad URL or scheme, a bad protocol token). */
export class ConnectionError extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = "ConnectionError";
  }
}

// ---------------------------------------------------------------------------------------------
// Observable values (the Svelte store contract) and event streams

/**
 * A value that changes. `subscribe(callback)` calls back with the current value at once and then at
 * every change, and returns the function that unsubscribes: the Svelte store contract, so it works
 * in Svelte as `$value` and in React through `useSyncExternalStore(v.subscribe, () => v.value)`.
 * It is also an async iterable of the current value and every later one.
 */
class Observable {
  #value;
  #subscribers = new Set();

  constructor(value) {
    this.#value = value;
  }

  /** The value now. */
  get value() {
    return this.#value;
  }

  subscribe(callback) {
    const entry = { callback };
    this.#subscribers.add(entry);
    callback(this.#value);
    return () => this.#subscribers.delete(entry);
  }

  /** @internal */
  _set(value) {
    if (Object.is(value, this.#value)) return;
    this.#value = value;
    for (const entry of [...this.#subscribers]) {
      if (this.#subscribers.has(entry)) entry.callback(value);
    }
  }

  [Symbol.asyncIterator]() {
    return iterate((push) => this.subscribe(push), null);
  }
}

/** An observable whose value follows `source` through `map`, skipping repeats. */
function derived(source, map) {
  const out = new Observable(map(source.value));
  source.subscribe((value) => out._set(map(value)));
  return out;
}

/** Iterator queues are bounded: a consumer this far behind gets an error instead of silent loss. */
const MAX_ITERATOR_BACKLOG = 65536;

/** An async iterator over what `attach(push)` pushes, ending when `onEnd(end)` is called. */
function iterate(attach, onEnd) {
  const queue = [];
  const waiting = [];
  let done = false;
  let failure = null;
  const finish = () => {
    done = true;
    detach();
    while (waiting.length) waiting.shift().resolve({ value: undefined, done: true });
  };
  const detach = attach((value) => {
    if (done) return;
    if (waiting.length) return waiting.shift().resolve({ value, done: false });
    if (queue.length >= MAX_ITERATOR_BACKLOG) {
      failure = new Error(`the consumer fell ${MAX_ITERATOR_BACKLOG} messages behind; read faster or use subscribe()`);
      done = true;
      detach();
      return;
    }
    queue.push(value);
  });
  if (onEnd) onEnd(finish);
  return {
    next() {
      if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
      if (failure) return Promise.reject(failure);
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    return() {
      finish();
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

/**
 * Events as they happen, to every subscriber (fan-out). What arrives while nobody listens is held
 * (up to `hold` events) and given to the first subscriber, so one attached right after `connect()`,
 * or a little later, misses nothing.
 */
class EventStream {
  #subscribers = new Set();
  #held = [];
  #hold;
  #ended = false;
  #enders = new Set();

  constructor(hold = 0) {
    this.#hold = hold;
  }

  /** Calls back with every event; returns the function that unsubscribes. */
  subscribe(callback) {
    const entry = { callback };
    this.#subscribers.add(entry);
    const held = this.#held;
    this.#held = [];
    for (const event of held) callback(event);
    return () => this.#subscribers.delete(entry);
  }

  /** A stream of `map(event)` for every event (a view; holding is the source's). */
  map(map) {
    return new MappedStream(this, map);
  }

  [Symbol.asyncIterator]() {
    return iterate(
      (push) => this.subscribe(push),
      (finish) => this._onEnd(finish),
    );
  }

  /** @internal */
  _onEnd(finish) {
    if (this.#ended) queueMicrotask(finish);
    else this.#enders.add(finish);
  }

  /** @internal */
  _emit(event) {
    if (this.#subscribers.size === 0) {
      if (this.#held.length < this.#hold) this.#held.push(event);
      return;
    }
    for (const entry of [...this.#subscribers]) {
      if (this.#subscribers.has(entry)) entry.callback(event);
    }
  }

  /** @internal: no more events; async iterators end once they have read what was queued. */
  _end() {
    this.#ended = true;
    for (const finish of this.#enders) queueMicrotask(finish);
    this.#enders.clear();
  }
}

class MappedStream {
  constructor(source, map) {
    this.source = source;
    this.mapper = map;
  }

  subscribe(callback) {
    return this.source.subscribe((event) => callback(this.mapper(event)));
  }

  map(map) {
    return new MappedStream(this, map);
  }

  [Symbol.asyncIterator]() {
    return iterate(
      (push) => this.subscribe(push),
      (finish) => this.#root()._onEnd(finish),
    );
  }

  #root() {
    let stream = this.source;
    while (stream instanceof MappedStream) stream = stream.source;
    return stream;
  }
}

/** The messages of a session, with views by type (fritz2's `messages.body`, `.data`, `.blob`, `.arrayBuffer`). */
class Messages extends EventStream {
  /** Each message's `data`: a string (text) or an ArrayBuffer (binary). */
  get data() {
    return this.map((event) => event.data);
  }

  /** Each message as text (binary messages decoded as UTF-8). */
  get body() {
    return this.map((event) => (typeof event.data === "string" ? event.data : utf8Decoder.decode(event.data)));
  }

  /** Each message as an ArrayBuffer (text encoded as UTF-8). */
  get arrayBuffer() {
    return this.map((event) =>
      typeof event.data === "string" ? utf8Encoder.encode(event.data).buffer : event.data,
    );
  }

  /** Each message as a Blob. */
  get blob() {
    return this.map((event) => new Blob([event.data]));
  }

  /** Each message parsed as JSON (a message that is not JSON throws in the consumer). */
  get json() {
    return this.map((event) => JSON.parse(typeof event.data === "string" ? event.data : utf8Decoder.decode(event.data)));
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** UTF-8 length of a string without encoding it. */
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function sizeOf(data) {
  if (typeof data === "string") return utf8Length(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof Blob !== "undefined" && data instanceof Blob) return data.size;
  throw new TypeError("send() takes a string, an ArrayBuffer, a typed array or DataView, or a Blob");
}

// ---------------------------------------------------------------------------------------------
// Reconnect policy (the Rust client's semantics)

/** Close codes after which reconnecting would fail the same way. */
const FINAL_CLOSE_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

const DEFAULT_RECONNECT = Object.freeze({ minDelay: 500, maxDelay: 20000, stableAfter: 5000, maxAttempts: Infinity });

/**
 * What to do after a connection ended with `code` on consecutive attempt `attempt` (0 first):
 * `null` to stop, or the delay in milliseconds. 1000, 1002, 1003, 1007-1010 and 4000-4099 stop;
 * 4200-4299 reconnect at once; anything else waits an exponential backoff with full jitter.
 */
export function reconnectDelay(policy, code, attempt, random = Math.random()) {
  if (attempt >= policy.maxAttempts) return null;
  if (FINAL_CLOSE_CODES.has(code) || (code >= 4000 && code <= 4099)) return null;
  if (code >= 4200 && code <= 4299) return 0;
  const cap = Math.min(policy.minDelay * 2 ** Math.min(attempt, 20), policy.maxDelay);
  return cap * Math.min(Math.max(random, 0), 1);
}

// ---------------------------------------------------------------------------------------------
// Socket and Session (fritz2's websocket() -> Socket -> Session)

/** The default limit of bytes waiting in a session's outbound queue. */
export const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;

/**
 * A description of where to connect (fritz2's `websocket(url, ...protocols)`): opens nothing.
 * Every builder returns a new Socket; every `connect()` is a new, independent session.
 */
export function websocket(url, ...protocols) {
  return new Socket({ url: String(url), protocols, reconnect: null, maxQueuedBytes: DEFAULT_MAX_QUEUED_BYTES, WebSocket: null });
}

class Socket {
  #options;

  constructor(options) {
    this.#options = Object.freeze(options);
  }

  /** The URL. */
  get url() {
    return this.#options.url;
  }

  /** The subprotocols offered. */
  get protocolList() {
    return [...this.#options.protocols];
  }

  /** The reconnect policy, or null (no reconnect, as in fritz2). */
  get reconnectPolicy() {
    return this.#options.reconnect;
  }

  #with(changes) {
    return new Socket({ ...this.#options, ...changes });
  }

  /** A socket for `url + "/" + path` (slashes between them trimmed to one). */
  append(path) {
    return this.#with({ url: joinUrl(this.#options.url, path) });
  }

  /** A socket offering these subprotocols instead. */
  protocols(...protocols) {
    return this.#with({ protocols });
  }

  /**
   * A socket whose sessions reconnect after a connection ends (see `reconnectDelay`):
   * `{minDelay = 500, maxDelay = 20000, stableAfter = 5000, maxAttempts = Infinity}`, in ms.
   * `false` turns it off.
   */
  reconnect(policy = {}) {
    if (policy === false) return this.#with({ reconnect: null });
    return this.#with({ reconnect: Object.freeze({ ...DEFAULT_RECONNECT, ...policy }) });
  }

  /** A socket whose sessions queue at most `bytes` bytes of unsent messages (default 16 MiB). */
  maxQueuedBytes(bytes) {
    return this.#with({ maxQueuedBytes: bytes });
  }

  /** A socket that uses this WebSocket class (e.g. the `ws` package under Node) instead of the global one. */
  webSocket(Impl) {
    return this.#with({ WebSocket: Impl });
  }

  /** Opens a session now (to `url + "/" + path` if a path is given). Throws `ConnectionError` if the URL or a protocol is invalid. */
  connect(path = "") {
    const url = path ? joinUrl(this.#options.url, path) : this.#options.url.replace(/\/+$/, "");
    return new Session({ ...this.#options, url });
  }
}

function joinUrl(base, path) {
  const tail = String(path).replace(/^\/+/, "");
  return tail ? `${base.replace(/\/+$/, "")}/${tail}` : base;
}

/** Session states: `connecting` (an attempt under way), `open`, `closing` (our close sent), `reconnecting` (waiting to try again), `closed` (for good). */
export const State = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  CLOSING: "closing",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

/** Messages received while nobody listens that the session holds for its first subscriber. */
const HELD_MESSAGES = 4096;

/** One connection (or, with a reconnect policy, a chain of them) and its streams. */
class Session {
  #options;
  #ws = null;
  #queue = [];
  #queuedBytes = 0;
  #attempt = 0;
  #openedAt = 0;
  #timer = null;
  #userClose = null;
  #closedWaiters = [];

  constructor(options) {
    this.#options = options;
    /** Every message received, in order, across reconnects. */
    this.messages = new Messages(HELD_MESSAGES);
    /** Error events of the WebSocket (a failed attempt shows up here and then as a close). */
    this.errors = new EventStream();
    /** `{state, attempt?, delay?, close?}` now and at every change. */
    this.state = new Observable({ state: State.CONNECTING, attempt: 0 });
    this.isConnecting = derived(this.state, (s) => s.state === State.CONNECTING || s.state === State.RECONNECTING);
    this.isOpen = derived(this.state, (s) => s.state === State.OPEN);
    this.isClosed = derived(this.state, (s) => s.state === State.CLOSED);
    /** The last open event (null before the first): a new one at every (re)connection. */
    this.opens = new Observable(null);
    /** The last close `{code, reason, wasClean}` (null before the first): one per connection that ended. */
    this.closes = new Observable(null);
    /** `{messages, bytes}` waiting in the outbound queue. */
    this.queued = new Observable({ messages: 0, bytes: 0 });
    this.#open(true);
  }

  /** The URL connected to. */
  get url() {
    return this.#options.url;
  }

  /** The subprotocol the server chose ("" if none or not open). */
  get protocol() {
    return this.#ws?.protocol ?? "";
  }

  /** Bytes the WebSocket buffered and our queue holds. */
  get bufferedAmount() {
    return (this.#ws?.bufferedAmount ?? 0) + this.#queuedBytes;
  }

  #WebSocket() {
    const Impl = this.#options.WebSocket ?? globalThis.WebSocket;
    if (!Impl) throw new ConnectionError("no WebSocket here: give one with socket.webSocket(Impl) (e.g. the ws package)");
    return Impl;
  }

  #open(first) {
    let ws;
    try {
      const Impl = this.#WebSocket();
      ws = new Impl(this.#options.url, this.#options.protocols);
    } catch (error) {
      const failure = error instanceof ConnectionError ? error : new ConnectionError(`error while opening connection to: ${this.#options.url}`, error);
      if (first) throw failure;
      this.#finish({ code: 1006, reason: failure.message, wasClean: false });
      return;
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#setState({ state: State.CONNECTING, attempt: this.#attempt });
    ws.onopen = (event) => {
      if (ws !== this.#ws) return;
      this.#openedAt = Date.now();
      this.#setState({ state: State.OPEN });
      this.opens._set(event);
      this.#flush();
    };
    ws.onmessage = (event) => {
      if (ws === this.#ws) this.messages._emit(event);
    };
    ws.onerror = (event) => {
      if (ws === this.#ws) this.errors._emit(event);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      this.#ws = null;
      this.#closed({ code: event.code, reason: event.reason, wasClean: event.wasClean });
    };
  }

  #setState(state) {
    this.state._set(Object.freeze(state));
  }

  #closed(close) {
    this.closes._set(Object.freeze(close));
    const policy = this.#options.reconnect;
    if (this.#userClose || !policy) return this.#finish(close);
    if (this.#openedAt && Date.now() - this.#openedAt >= policy.stableAfter) this.#attempt = 0;
    this.#openedAt = 0;
    const delay = reconnectDelay(policy, close.code, this.#attempt);
    if (delay === null) return this.#finish(close);
    this.#attempt += 1;
    this.#setState({ state: State.RECONNECTING, attempt: this.#attempt, delay, close });
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#open(false);
    }, delay);
  }

  #finish(close) {
    if (this.state.value.state === State.CLOSED) return;
    const event = Object.freeze(close);
    this.#setState({ state: State.CLOSED, close: event });
    const queue = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#publishQueue();
    for (const item of queue) item.reject(closedError(event));
    this.messages._end();
    this.errors._end();
    for (const resolve of this.#closedWaiters) resolve(event);
    this.#closedWaiters = [];
  }

  #flush() {
    const ws = this.#ws;
    while (this.#queue.length && ws && ws.readyState === 1) {
      const item = this.#queue.shift();
      this.#queuedBytes -= item.size;
      try {
        ws.send(item.data);
        item.resolve();
      } catch (error) {
        item.reject(error);
      }
    }
    this.#publishQueue();
  }

  #publishQueue() {
    const now = this.queued.value;
    if (now.messages !== this.#queue.length || now.bytes !== this.#queuedBytes) {
      this.queued._set(Object.freeze({ messages: this.#queue.length, bytes: this.#queuedBytes }));
    }
  }

  /**
   * Sends a string, ArrayBuffer, typed array, DataView or Blob. Resolves when the message is handed
   * to the WebSocket; made while connecting (or reconnecting) it waits in the queue and goes out in
   * order once open. Rejects with `SendError` once the session is closing or closed, or when the
   * queue would grow past its limit.
   */
  send(data) {
    const state = this.state.value;
    if (state.state === State.CLOSED) return Promise.reject(closedError(state.close));
    if (state.state === State.CLOSING || this.#userClose) {
      return Promise.reject(new SendError("the session is closing", { kind: "closing" }));
    }
    let size;
    try {
      size = sizeOf(data);
    } catch (error) {
      return Promise.reject(error);
    }
    const ws = this.#ws;
    if (this.#queue.length === 0 && ws && ws.readyState === 1) {
      try {
        ws.send(data);
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const limit = this.#options.maxQueuedBytes;
    if (this.#queuedBytes + size > limit) {
      return Promise.reject(new SendError(`the outgoing queue is full (${limit} bytes)`, { kind: "queue-full" }));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ data, size, resolve, reject });
      this.#queuedBytes += size;
      this.#publishQueue();
    });
  }

  /** Sends a value as JSON text. */
  sendJson(value) {
    return this.send(JSON.stringify(value));
  }

  /**
   * Closes the session for good (no reconnect): `code` 1000 or 3000-4999, `reason` at most 123
   * UTF-8 bytes, or a `CloseError` is thrown, as browsers do. Resolves with the final close event.
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new CloseError(`invalid close code ${code}: use 1000 or 3000-4999`);
    }
    if (utf8Length(String(reason)) > 123) throw new CloseError("the close reason is longer than 123 UTF-8 bytes");
    const done = this.closed();
    if (this.state.value.state === State.CLOSED) return done;
    this.#userClose = { code, reason: String(reason) };
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
      this.#finish({ code, reason: String(reason), wasClean: true });
    } else if (this.#ws) {
      if (this.#ws.readyState === 1) this.#setState({ state: State.CLOSING });
      this.#ws.close(code, reason);
    }
    return done;
  }

  /** Resolves with the final close event once the session is closed for good. */
  closed() {
    const state = this.state.value;
    if (state.state === State.CLOSED) return Promise.resolve(state.close);
    return new Promise((resolve) => this.#closedWaiters.push(resolve));
  }

  /** Calls back with every message event; returns the function that unsubscribes. */
  onMessage(callback) {
    return this.messages.subscribe(callback);
  }
}

function closedError(close) {
  const code = close?.code ?? 1006;
  const reason = close?.reason ?? "";
  return new SendError(`the session is closed (${code}${reason ? `: ${reason}` : ""})`, { kind: "closed", code, reason });
}

// ---------------------------------------------------------------------------------------------
// Stores and resources

/**
 * A minimal store (fritz2's `Store`, the Svelte writable contract): `value`, `set`, `update`,
 * `subscribe`. Any object with `subscribe` and `set` that calls its subscribers synchronously
 * (a Svelte `writable`, for one) works with `syncWith` too.
 */
export function createStore(initial) {
  const observable = new Observable(initial);
  return {
    get value() {
      return observable.value;
    },
    set: (value) => observable._set(value),
    update: (change) => observable._set(change(observable.value)),
    subscribe: (callback) => observable.subscribe(callback),
    [Symbol.asyncIterator]: () => observable[Symbol.asyncIterator](),
  };
}

/** The default serializer: entities are plain JSON values (copied, so later mutation in place cannot leak in). */
export const Json = Object.freeze({
  write: (entity) => JSON.parse(JSON.stringify(entity)),
  read: (value) => value,
});

/** How entities are identified and (de)serialised, and what an empty (or deleted) entity is (fritz2's `Resource(idProvider, serializer, emptyEntity)`). */
export class Resource {
  /**
   * @param {(entity: any) => string | number} idOf the entity's id
   * @param {{write(entity: any): any, read(value: any): any}} serializer entity to JSON value and back
   * @param {any} emptyEntity a new store's value, and what a deleted entity becomes
   */
  constructor(idOf, serializer = Json, emptyEntity = null) {
    if (typeof idOf !== "function") throw new TypeError("Resource: idOf must be a function of the entity");
    this.idOf = (entity) => String(idOf(entity) ?? "");
    this.serializer = serializer;
    this.emptyEntity = emptyEntity;
  }
}

// ---------------------------------------------------------------------------------------------
// Store sync: the client side of switchboard.sync.v1, as the Rust client does it

/** How long a retryable rejection waits before the mutation is sent again. */
const RETRY_DELAY = 1000;

function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && jsonEqual(a[key], b[key]));
}

/** A UUID v4 from getRandomValues (randomUUID exists only in secure contexts). */
function uuid() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The client state of one subscription, with no I/O: what the server confirmed, the local
 * mutations not yet answered, and the messages to send. The view is the confirmed state with the
 * pending mutations on top. Exported for tests and for those who bring their own transport.
 */
export class Replica {
  constructor(collection, entity, client, single) {
    this.collection = collection;
    this.entity = entity || null;
    this.single = single;
    this.deleted = false;
    this.client = client;
    this.version = null;
    this.open = false;
    this.ready = false;
    /** @type {Map<string, any>} */
    this.confirmed = new Map();
    /** The version of each entity's confirmed state (deleted ones too): an ack travels apart from
     * the changes and may arrive after a newer change of the same entity; it must not undo it. */
    this.versions = new Map();
    /** The highest version of an acknowledged mutation: an ack may overtake its own change, and until
     * the changes reach it the view lacks something the server confirmed. */
    this.acked = 0;
    /** @type {{mutation_id: string, id: string, data?: any, deleted?: boolean, state: "queued" | "sent"}[]} */
    this.pending = [];
  }

  #sub() {
    const sub = { type: "sub", collection: this.collection, client: this.client };
    if (this.entity !== null) sub.id = this.entity;
    if (this.version !== null) sub.since = this.version;
    return sub;
  }

  static #messageFor(pending) {
    return pending.deleted
      ? { type: "delete", mutation_id: pending.mutation_id, id: pending.id }
      : { type: "mutate", mutation_id: pending.mutation_id, id: pending.id, data: pending.data };
  }

  /** A single-entity replica now follows entity `id`: resubscribe if that is new. */
  follow(id) {
    if (!this.single || this.entity === id) return [];
    this.entity = id;
    this.deleted = false;
    this.version = null;
    this.confirmed.clear();
    this.versions.clear();
    this.acked = 0;
    this.ready = false;
    return this.open ? [this.#sub()] : [];
  }

  /** Ready, nothing pending, and every acknowledged change seen: the view is the server's state. */
  synced() {
    return this.ready && this.pending.length === 0 && this.version !== null && this.version >= this.acked;
  }

  /** A connection opened: subscribe (resuming after the version seen), then resend what is unanswered, in order. */
  onOpen() {
    if (this.open) return [];
    this.open = true;
    this.ready = false;
    const send = [];
    if (!this.single || this.entity !== null) send.push(this.#sub());
    return send.concat(this.resend());
  }

  /** The connection closed: what was sent and not answered goes again on the next. */
  onClose() {
    this.open = false;
    this.ready = false;
    for (const pending of this.pending) pending.state = "queued";
  }

  /** The queued mutations, marked sent (nothing while offline). */
  resend() {
    if (!this.open) return [];
    const send = [];
    for (const pending of this.pending) {
      if (pending.state === "queued") {
        pending.state = "sent";
        send.push(Replica.#messageFor(pending));
      }
    }
    return send;
  }

  /** @returns {Map<string, any>} the confirmed entities with the pending mutations applied in order */
  view() {
    const view = new Map(this.confirmed);
    for (const pending of this.pending) {
      if (pending.deleted) view.delete(pending.id);
      else view.set(pending.id, pending.data);
    }
    return view;
  }

  /** The store now shows `local` (a Map of id to JSON value): queue a mutation per entity changed, added or removed. */
  localEdit(local) {
    const view = this.view();
    for (const [id, data] of local) {
      if (!view.has(id) || !jsonEqual(view.get(id), data)) {
        this.pending.push({ mutation_id: uuid(), id, data, state: "queued" });
      }
    }
    for (const id of view.keys()) {
      if (!local.has(id)) this.pending.push({ mutation_id: uuid(), id, deleted: true, state: "queued" });
    }
    return this.resend();
  }

  /** Takes `data` (undefined: deleted) as the entity's state at `version`, unless a newer one is known. */
  #setConfirmed(id, data, version) {
    if ((this.versions.get(id) ?? 0) > version) return;
    this.versions.set(id, version);
    if (this.entity === id) this.deleted = data === undefined;
    if (data === undefined) this.confirmed.delete(id);
    else this.confirmed.set(id, data);
  }

  /** Handles one server message; returns `{send, viewChanged, rejection, retry, error}`. */
  onMessage(message) {
    const effects = { send: [], viewChanged: false, rejection: null, retry: false, error: null };
    switch (message.type) {
      case "snapshot":
        this.confirmed = new Map(message.entities.map((e) => [e.id, e.data]));
        this.versions = new Map(message.entities.map((e) => [e.id, e.version]));
        if (this.entity !== null) this.deleted = !this.confirmed.has(this.entity);
        this.version = message.version;
        effects.viewChanged = true;
        break;
      case "ready":
        this.ready = true;
        this.version = this.version === null ? message.version : Math.max(this.version, message.version);
        break;
      case "change": {
        const seen = this.version ?? 0;
        if (this.version !== null && message.version <= seen) break;
        if (this.entity === null && this.version !== null && message.version !== seen + 1) {
          this.ready = false;
          effects.send.push(this.#sub());
          break;
        }
        this.#setConfirmed(message.id, message.deleted ? undefined : message.data, message.version);
        this.version = message.version;
        effects.viewChanged = true;
        break;
      }
      case "ack": {
        this.acked = Math.max(this.acked, message.version ?? 0);
        const at = this.pending.findIndex((p) => p.mutation_id === message.mutation_id);
        if (at < 0) break;
        const [pending] = this.pending.splice(at, 1);
        this.#setConfirmed(pending.id, message.data === null || message.data === undefined ? undefined : message.data, message.version);
        effects.viewChanged = true;
        break;
      }
      case "reject": {
        const at = this.pending.findIndex((p) => p.mutation_id === message.mutation_id);
        if (at < 0) break;
        if (message.retryable) {
          this.pending[at].state = "queued";
          effects.retry = true;
          break;
        }
        const [pending] = this.pending.splice(at, 1);
        const current = message.current ?? null;
        if (current) {
          const live = current.version > 0 && !current.deleted;
          this.#setConfirmed(pending.id, live ? current.data : undefined, current.version);
        }
        effects.viewChanged = true;
        effects.rejection = { mutation_id: message.mutation_id, id: pending.id, reason: message.reason, current };
        break;
      }
      case "refetch":
        this.version = null;
        this.ready = false;
        effects.send.push(this.#sub());
        break;
      case "error":
        effects.error = message.reason;
        break;
      default:
        effects.error = `unknown message type ${JSON.stringify(message.type)}`;
    }
    return effects;
  }

  /** What survives a reload: the client name, the confirmed state and the pending mutations. */
  toJSON() {
    return {
      client: this.client,
      entity: this.entity,
      version: this.version,
      deleted: this.deleted,
      confirmed: [...this.confirmed],
      versions: [...this.versions],
      pending: this.pending.map((p) => ({ ...p, state: "queued" })),
    };
  }

  /** Takes back what `toJSON` saved (for the same collection). */
  restore(saved) {
    this.client = saved.client;
    if (this.single && saved.entity !== this.entity && this.entity !== null) return;
    this.entity = saved.entity;
    this.version = saved.version;
    this.deleted = saved.deleted;
    this.confirmed = new Map(saved.confirmed);
    this.versions = new Map(saved.versions ?? []);
    this.pending = saved.pending;
  }
}

/** How a store's value maps to entities: one entity (`syncWith`) or a list of them (`syncListWith`). */
function singleShape(resource) {
  return {
    single: true,
    entity: (value) => resource.idOf(value) || null,
    entities(value) {
      const id = resource.idOf(value);
      if (!id) throw new Error("the entity's id is empty: give it an id to sync it");
      return new Map([[id, resource.serializer.write(value)]]);
    },
    value(view, current, deleted, errors) {
      const first = view.values().next();
      if (!first.done) {
        try {
          return resource.serializer.read(first.value);
        } catch (error) {
          errors.push(`the entity cannot be read: ${error.message ?? error}`);
          return current;
        }
      }
      return deleted ? resource.emptyEntity : current;
    },
  };
}

function listShape(resource) {
  return {
    single: false,
    entity: () => null,
    entities: (list) => new Map(list.map((entity) => [resource.idOf(entity), resource.serializer.write(entity)])),
    value(view, _current, _deleted, errors) {
      const ids = [...view.keys()].sort();
      const list = [];
      for (const id of ids) {
        try {
          list.push(resource.serializer.read(view.get(id)));
        } catch (error) {
          errors.push(`entity ${id} cannot be read: ${error.message ?? error}`);
        }
      }
      return list;
    },
  };
}

/** The collection a sync URL names: its last path segment (`ws://host/sync/people` is `people`). */
function collectionOf(url) {
  const path = url.split(/[?#]/)[0].replace(/\/+$/, "");
  return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage disabled (a sandboxed frame)
  }
}

/** Sync states: `connecting`, `syncing` (subscribing, or mutations on their way), `synced`, `offline`, `stopped`. */
export const SyncState = Object.freeze({
  CONNECTING: "connecting",
  SYNCING: "syncing",
  SYNCED: "synced",
  OFFLINE: "offline",
  STOPPED: "stopped",
});

class Sync {
  #store;
  #shape;
  #replica;
  #session;
  #storage;
  #key;
  #applying = false;
  #everOpen = false;
  #retryTimer = null;
  #saveQueued = false;
  #unsubscribe = [];

  constructor(store, socket, shape, options) {
    if (!store || typeof store.subscribe !== "function" || typeof store.set !== "function") {
      throw new TypeError("syncWith: the store needs subscribe(callback) and set(value) (createStore() makes one)");
    }
    const policy = socket.reconnectPolicy ?? DEFAULT_RECONNECT;
    const synced = socket.protocols(SYNC_PROTOCOL).reconnect(policy);
    this.#store = store;
    this.#shape = shape;
    this.#storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.#key = options.key ?? `switchboard.sync:${synced.url}`;
    /** `{state, version, pending}` now and at every change. */
    this.status = new Observable(Object.freeze({ state: SyncState.CONNECTING, version: null, pending: 0 }));
    /** The local mutations the server has not answered, in order. */
    this.pending = new Observable(Object.freeze([]));
    /** Mutations the server refused for good (the store was rolled back to the server's value). */
    this.rejections = new EventStream(64);
    /** What went wrong on the way (a message that cannot be read, an `error` from the server); the sync goes on. */
    this.errors = new EventStream(64);

    let current;
    const stopInitial = store.subscribe((value) => (current = value));
    stopInitial();
    this.#replica = new Replica(collectionOf(synced.url), shape.entity(current), uuid(), shape.single);
    const saved = this.#load();
    if (saved) {
      this.#replica.restore(saved);
      this.#show();
    }
    this.#session = synced.connect();
    let first = true;
    this.#unsubscribe.push(
      store.subscribe((value) => {
        if (first) return void (first = false); // as fritz2: the initial value is not sent
        if (!this.#applying) this.#localEdit(value);
      }),
      this.#session.opens.subscribe((event) => event && this.#opened()),
      this.#session.closes.subscribe((event) => {
        if (event) {
          this.#replica.onClose();
          this.#publish();
        }
      }),
      this.#session.messages.subscribe((event) => this.#message(event)),
      this.#session.isClosed.subscribe((closed) => closed && this.#stopped()),
    );
    this.#publish();
  }

  /** The session underneath (its state, its close). */
  get session() {
    return this.#session;
  }

  /** The client name the server scopes mutation ids by (kept across reloads with the pending mutations). */
  get client() {
    return this.#replica.client;
  }

  /** Resolves with the collection version once synced with every local change made before the call acknowledged; null if the sync stopped first. */
  synced() {
    return new Promise((resolve) => {
      const stop = this.status.subscribe((status) => {
        if (status.state === SyncState.SYNCED || status.state === SyncState.STOPPED) {
          queueMicrotask(() => stop());
          resolve(status.state === SyncState.SYNCED ? status.version : null);
        }
      });
    });
  }

  /** Stops syncing and closes the connection; unanswered local changes stay pending (and saved). */
  async stop() {
    this.#detach();
    await this.#session.close(1000, "sync stopped");
    this.#stopped();
  }

  #detach() {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #stopped() {
    this.#detach();
    this.#save();
    this.status._set(Object.freeze({ state: SyncState.STOPPED, version: this.#replica.version, pending: this.#replica.pending.length }));
  }

  #opened() {
    this.#everOpen = true;
    this.#send(this.#replica.onOpen());
    this.#publish();
  }

  #localEdit(value) {
    if (this.#shape.single) {
      const id = this.#shape.entity(value);
      if (id) this.#send(this.#replica.follow(id));
    }
    let entities;
    try {
      entities = this.#shape.entities(value);
    } catch (error) {
      return this.#error(`a local change cannot be synced: ${error.message ?? error}`);
    }
    this.#send(this.#replica.localEdit(entities));
    this.#publish();
  }

  #message(event) {
    let message;
    try {
      message = JSON.parse(typeof event.data === "string" ? event.data : utf8Decoder.decode(event.data));
      if (typeof message !== "object" || message === null || typeof message.type !== "string") throw new Error("not a message object");
    } catch (error) {
      return this.#error(`a message from the server cannot be read: ${error.message ?? error}`);
    }
    const effects = this.#replica.onMessage(message);
    this.#send(effects.send);
    if (effects.error) this.#error(`the server said: ${effects.error}`);
    if (effects.retry && this.#retryTimer === null) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        this.#send(this.#replica.resend());
        this.#publish();
      }, RETRY_DELAY);
    }
    if (effects.viewChanged) this.#show();
    this.#publish();
    if (effects.rejection) this.rejections._emit(Object.freeze(effects.rejection));
  }

  #show() {
    const errors = [];
    let current;
    this.#store.subscribe((value) => (current = value))();
    const value = this.#shape.value(this.#replica.view(), current, this.#replica.deleted, errors);
    for (const error of errors) this.#error(error);
    this.#applying = true;
    try {
      this.#store.set(value);
    } finally {
      this.#applying = false;
    }
  }

  #send(messages) {
    for (const message of messages) {
      this.#session.send(JSON.stringify(message)).catch(() => {}); // a closed session resends on the next
    }
  }

  #error(error) {
    this.errors._emit(error);
  }

  #publish() {
    const replica = this.#replica;
    const pending = replica.pending.length;
    let state;
    if (!replica.open) state = this.#everOpen ? SyncState.OFFLINE : SyncState.CONNECTING;
    else if (replica.synced()) state = SyncState.SYNCED;
    else state = SyncState.SYNCING;
    const now = this.status.value;
    if (now.state !== SyncState.STOPPED && (now.state !== state || now.version !== replica.version || now.pending !== pending)) {
      this.status._set(Object.freeze({ state, version: replica.version, pending }));
    }
    const list = this.pending.value;
    const changed = list.length !== pending || list.some((p, i) => p.mutation_id !== replica.pending[i].mutation_id || p.state !== replica.pending[i].state);
    if (changed) this.pending._set(Object.freeze(replica.pending.map((p) => Object.freeze({ ...p }))));
    this.#queueSave();
  }

  #queueSave() {
    if (!this.#storage || this.#saveQueued) return;
    this.#saveQueued = true;
    queueMicrotask(() => {
      this.#saveQueued = false;
      this.#save();
    });
  }

  #save() {
    if (!this.#storage) return;
    try {
      this.#storage.setItem(this.#key, JSON.stringify(this.#replica));
    } catch (error) {
      this.#error(`the sync state cannot be saved: ${error.message ?? error}`);
    }
  }

  #load() {
    if (!this.#storage) return null;
    try {
      const text = this.#storage.getItem(this.#key);
      if (!text) return null;
      const saved = JSON.parse(text);
      if (typeof saved?.client !== "string" || !Array.isArray(saved.pending) || !Array.isArray(saved.confirmed)) return null;
      return saved;
    } catch (error) {
      this.#error(`the saved sync state cannot be read: ${error.message ?? error}`);
      return null;
    }
  }
}

/**
 * Keeps `store` (one entity) in sync with the collection at `socket`'s URL
 * (`ws://host/sync/<collection>`), following the entity `resource.idOf` names in the store's value.
 * As in fritz2 the initial value is not sent, every later local change is, and what the server
 * sends replaces the store without being sent back. Beyond fritz2: mutation ids (exactly once),
 * versions, rollback on a rejection, an offline queue replayed on reconnect (a socket without a
 * reconnect policy gets the default one), and pending mutations saved in `options.storage`
 * (default `sessionStorage`: they survive a reload of the tab) under `options.key`.
 */
export function syncWith(store, socket, resource, options = {}) {
  return new Sync(store, socket, singleShape(resource), options);
}

/** Keeps a store holding a list of entities in sync with the whole collection (fritz2's list variant); the list is in id order. */
export function syncListWith(store, socket, resource, options = {}) {
  return new Sync(store, socket, listShape(resource), options);
}
