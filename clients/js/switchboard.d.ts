// Type declarations of switchboard.js.

/** The subprotocol of store sync. */
export const SYNC_PROTOCOL: "switchboard.sync.v1";
/** The default limit of bytes waiting in a session's outbound queue (16 MiB). */
export const DEFAULT_MAX_QUEUED_BYTES: number;

/** A message could not be sent: the session is closed (by either side), closing, or its queue is full. */
export class SendError extends Error {
  readonly name: "SendError";
  readonly kind: "closed" | "closing" | "queue-full";
  /** The close code, for `kind: "closed"`. */
  readonly code: number | null;
  /** The close reason, for `kind: "closed"`. */
  readonly reason: string;
}
/** `close()` was given a code other than 1000 or 3000-4999, or a reason over 123 UTF-8 bytes. */
export class CloseError extends Error {
  readonly name: "CloseError";
}
/** The WebSocket could not be created (a bad URL or scheme, a bad protocol token, no WebSocket). */
export class ConnectionError extends Error {
  readonly name: "ConnectionError";
}

/** The Svelte store contract: calls back with the current value at once, then at every change. */
export interface Readable<T> extends AsyncIterable<T> {
  readonly value: T;
  subscribe(callback: (value: T) => void): () => void;
}

/** Events to every subscriber; async iterable (ends when the session is closed for good). */
export interface EventStream<T> extends AsyncIterable<T> {
  subscribe(callback: (event: T) => void): () => void;
  map<U>(map: (event: T) => U): EventStream<U>;
}

/** A received message (the browser's MessageEvent; `data` is a string or an ArrayBuffer). */
export interface MessageLike {
  readonly data: string | ArrayBuffer;
}

/** A session's messages, with views by type. */
export interface Messages extends EventStream<MessageLike> {
  readonly data: EventStream<string | ArrayBuffer>;
  readonly body: EventStream<string>;
  readonly arrayBuffer: EventStream<ArrayBuffer>;
  readonly blob: EventStream<Blob>;
  readonly json: EventStream<unknown>;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
}

export const State: {
  readonly CONNECTING: "connecting";
  readonly OPEN: "open";
  readonly CLOSING: "closing";
  readonly RECONNECTING: "reconnecting";
  readonly CLOSED: "closed";
};

export type SessionState =
  | { readonly state: "connecting"; readonly attempt: number }
  | { readonly state: "open" }
  | { readonly state: "closing" }
  | { readonly state: "reconnecting"; readonly attempt: number; readonly delay: number; readonly close: CloseInfo }
  | { readonly state: "closed"; readonly close: CloseInfo };

/** Reconnect policy, in milliseconds. */
export interface ReconnectPolicy {
  minDelay?: number;
  maxDelay?: number;
  stableAfter?: number;
  maxAttempts?: number;
}

/** The delay before the next attempt after close `code` on attempt `attempt` (0 first), or null to stop. */
export function reconnectDelay(policy: Required<ReconnectPolicy>, code: number, attempt: number, random?: number): number | null;

export type SendData = string | ArrayBuffer | ArrayBufferView | Blob;

/** One connection (or, with a reconnect policy, a chain of them). */
export interface Session {
  readonly url: string;
  readonly protocol: string;
  readonly bufferedAmount: number;
  readonly messages: Messages;
  readonly errors: EventStream<Event>;
  readonly state: Readable<SessionState>;
  readonly isConnecting: Readable<boolean>;
  readonly isOpen: Readable<boolean>;
  readonly isClosed: Readable<boolean>;
  readonly opens: Readable<Event | null>;
  readonly closes: Readable<CloseInfo | null>;
  readonly queued: Readable<{ readonly messages: number; readonly bytes: number }>;
  send(data: SendData): Promise<void>;
  sendJson(value: unknown): Promise<void>;
  close(code?: number, reason?: string): Promise<CloseInfo>;
  closed(): Promise<CloseInfo>;
  onMessage(callback: (event: MessageLike) => void): () => void;
}

/** Where to connect; opens nothing. Builders return new sockets. */
export interface Socket {
  readonly url: string;
  readonly protocolList: string[];
  readonly reconnectPolicy: Required<ReconnectPolicy> | null;
  append(path: string): Socket;
  protocols(...protocols: string[]): Socket;
  reconnect(policy?: ReconnectPolicy | false): Socket;
  maxQueuedBytes(bytes: number): Socket;
  webSocket(Impl: unknown): Socket;
  connect(path?: string): Session;
}

/** fritz2's `websocket(url, ...protocols)`. */
export function websocket(url: string | URL, ...protocols: string[]): Socket;

/** A minimal store: the Svelte writable contract. */
export interface Store<T> extends Readable<T> {
  set(value: T): void;
  update(change: (value: T) => T): void;
}
export function createStore<T>(initial: T): Store<T>;

/** What `syncWith` needs of a store (a Svelte `writable` qualifies). */
export interface WritableLike<T> {
  subscribe(callback: (value: T) => void): () => void;
  set(value: T): void;
}

export interface Serializer<T> {
  write(entity: T): unknown;
  read(value: unknown): T;
}
export const Json: Serializer<any>;

/** fritz2's `Resource(idProvider, serializer, emptyEntity)`. */
export class Resource<T> {
  constructor(idOf: (entity: T) => string | number, serializer?: Serializer<T>, emptyEntity?: T);
  readonly idOf: (entity: T) => string;
  readonly serializer: Serializer<T>;
  readonly emptyEntity: T;
}

export const SyncState: {
  readonly CONNECTING: "connecting";
  readonly SYNCING: "syncing";
  readonly SYNCED: "synced";
  readonly OFFLINE: "offline";
  readonly STOPPED: "stopped";
};

export interface SyncStatus {
  readonly state: "connecting" | "syncing" | "synced" | "offline" | "stopped";
  /** The collection version seen last. */
  readonly version: number | null;
  /** Mutations not yet answered. */
  readonly pending: number;
}

export interface PendingMutation {
  readonly mutation_id: string;
  readonly id: string;
  readonly data?: unknown;
  readonly deleted?: boolean;
  readonly state: "queued" | "sent";
}

export interface Rejection {
  readonly mutation_id: string;
  readonly id: string;
  readonly reason: string;
  readonly current: { readonly data: unknown; readonly version: number; readonly deleted?: boolean } | null;
}

export interface SyncOptions {
  /** Where pending mutations and the confirmed state are kept (default sessionStorage; null: nowhere). */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  /** The storage key (default `switchboard.sync:<url>`). */
  key?: string;
}

export interface SyncHandle {
  readonly status: Readable<SyncStatus>;
  readonly pending: Readable<readonly PendingMutation[]>;
  readonly rejections: EventStream<Rejection>;
  readonly errors: EventStream<string>;
  readonly session: Session;
  readonly client: string;
  synced(): Promise<number | null>;
  stop(): Promise<void>;
}

export function syncWith<T>(store: WritableLike<T>, socket: Socket, resource: Resource<T>, options?: SyncOptions): SyncHandle;
export function syncListWith<T>(store: WritableLike<T[]>, socket: Socket, resource: Resource<T>, options?: SyncOptions): SyncHandle;

/** The client state machine of switchboard.sync.v1 (no I/O). */
export class Replica {
  constructor(collection: string, entity: string | null, client: string, single: boolean);
  onOpen(): object[];
  onClose(): void;
  resend(): object[];
  follow(id: string): object[];
  view(): Map<string, unknown>;
  localEdit(local: Map<string, unknown>): object[];
  onMessage(message: { type: string; [field: string]: unknown }): {
    send: object[];
    viewChanged: boolean;
    rejection: Rejection | null;
    retry: boolean;
    error: string | null;
  };
}
