// The JavaScript half of a script runtime: Dirigible's `sdk/net` websockets API, console, CommonJS
// `require`, and the dispatcher that runs a handler module for an event in either style. Evaluated
// once per runtime, before any handler; `__host` (native functions) is installed before it.
(function () {
  "use strict";
  const host = globalThis.__host;
  delete globalThis.__host;

  const METHOD_EXPORTS = { onopen: "onOpen", onmessage: "onMessage", onerror: "onError", onclose: "onClose" };
  // The host passes methods by number (cheaper than comparing strings made in Rust).
  const METHODS = ["onopen", "onmessage", "onerror", "onclose"];
  // The event being handled: one object, refilled for every event; `current` is null between events.
  const event = { method: undefined, message: undefined, error: undefined, peer: null };
  let current = null;

  function format(args) {
    return args
      .map((a) => {
        if (typeof a === "string") return a;
        if (a instanceof Error) return a.stack ? `${a.name}: ${a.message}\n${a.stack}` : `${a.name}: ${a.message}`;
        try {
          const json = JSON.stringify(a);
          return json === undefined ? String(a) : json;
        } catch (_) {
          return String(a);
        }
      })
      .join(" ");
  }
  globalThis.console = {
    log: (...args) => host.log("info", format(args)),
    info: (...args) => host.log("info", format(args)),
    debug: (...args) => host.log("debug", format(args)),
    warn: (...args) => host.log("warn", format(args)),
    error: (...args) => host.log("error", format(args)),
  };

  // Data a script sends: strings as text, ArrayBuffers and typed arrays as binary, the rest as JSON.
  function outgoing(data) {
    if (typeof data === "string") return data;
    if (data instanceof ArrayBuffer) return data;
    if (ArrayBuffer.isView(data)) return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    if (data === undefined) return "";
    return JSON.stringify(data);
  }

  // `n` is the runtime's number for the connection; `id` its UUID.
  function makePeer(n) {
    return Object.freeze({
      id: host.peerId(n),
      send: (data) => host.peerSend(n, outgoing(data)),
      close: (code, reason) => host.peerClose(n, code === undefined ? 1000 : code, reason === undefined ? "" : String(reason)),
      subscribe: (topic) => host.peerSubscribe(n, String(topic)),
      unsubscribe: (topic) => host.peerUnsubscribe(n, String(topic)),
      publish: (topic, data) => host.peerPublish(n, String(topic), outgoing(data)),
    });
  }

  function makeClient(info) {
    return Object.freeze({
      id: info.id,
      uri: info.uri,
      handler: info.handler,
      engine: info.engine,
      get state() {
        const now = host.clientInfo(info.id);
        return now ? now.state : "closed";
      },
      send: (message) => host.clientSend(info.id, outgoing(message)),
      close: () => host.clientClose(info.id),
    });
  }

  const websockets = Object.freeze({
    createWebsocket(uri, handler, engine) {
      return makeClient(host.clientCreate(String(uri), String(handler), engine === undefined ? "javascript" : String(engine)));
    },
    getClients: () => host.clientList(),
    getClient(id) {
      const info = host.clientInfo(String(id));
      return info ? makeClient(info) : null;
    },
    getClientByHandler(handler) {
      const info = host.clientList().find((c) => c.handler === handler);
      return info ? makeClient(info) : null;
    },
    getMessage: () => (current ? current.message : undefined),
    getError: () => (current ? current.error : undefined),
    getMethod: () => (current ? current.method : undefined),
    isOnOpen: () => current !== null && current.method === "onopen",
    isOnMessage: () => current !== null && current.method === "onmessage",
    isOnError: () => current !== null && current.method === "onerror",
    isOnClose: () => current !== null && current.method === "onclose",
    getPeer: () => (current ? current.peer : null),
  });

  // CommonJS: the SDK modules by name, project modules by path (compiled by the host, cached).
  const BUILTINS = {
    "sdk/net": { websockets },
    "net/v4/websockets": websockets,
    "net/websockets": websockets,
  };
  const commonJsCache = new Map();
  function makeRequire(from) {
    return function require(name) {
      name = String(name);
      if (Object.prototype.hasOwnProperty.call(BUILTINS, name)) return BUILTINS[name];
      const path = host.resolve(from, name);
      if (commonJsCache.has(path)) return commonJsCache.get(path).exports;
      const module = { exports: {} };
      commonJsCache.set(path, module);
      host.compile(path)(module.exports, makeRequire(path), module, path);
      return module.exports;
    };
  }

  // Handlers, by the number the host gave their module: { path, esm, namespace } or
  // { path, fn, exports, perEvent }.
  const handlers = [];
  // One peer object per connection, from its first event to its close.
  const peers = new Map();
  function peerFor(id) {
    let peer = peers.get(id);
    if (peer === undefined) {
      peer = makePeer(id);
      peers.set(id, peer);
    }
    return peer;
  }

  function hasEventExports(object) {
    return object !== null && typeof object === "object" && Object.values(METHOD_EXPORTS).some((name) => typeof object[name] === "function");
  }

  function callExport(exports, method, arg) {
    const fn = exports[METHOD_EXPORTS[method]];
    if (typeof fn !== "function") return undefined;
    return method === "onmessage" || method === "onerror" ? fn.call(exports, arg) : fn.call(exports);
  }

  globalThis.__switchboard = Object.freeze({
    websockets,
    // Registers a handler loaded by the host: an ES module namespace, or a compiled CommonJS body.
    registerModule(number, path, namespace) {
      // Read once: a module namespace is an exotic object, slow to look up on every event.
      const fns = METHODS.map((method) => {
        const fn = namespace[METHOD_EXPORTS[method]];
        return typeof fn === "function" ? fn : undefined;
      });
      handlers[number] = { path, esm: true, namespace, fns };
    },
    registerCommonJs(number, path, fn) {
      handlers[number] = { path, esm: false, fn, exports: undefined, perEvent: false };
    },
    // Runs handler `path` for one event; returns what the handler returned (the reply).
    dispatch(handlerNumber, methodNumber, message, error, peerId) {
      const handler = handlers[handlerNumber];
      const path = handler.path;
      const method = METHODS[methodNumber];
      event.method = method;
      event.message = message;
      event.error = error;
      event.peer = peerId == null ? null : peerFor(peerId);
      current = event;
      const arg = method === "onmessage" ? message : error;
      try {
        if (handler.esm) {
          const fn = handler.fns[methodNumber];
          if (fn === undefined) return undefined;
          return methodNumber === 1 || methodNumber === 2 ? fn(arg) : fn();
        }
        if (handler.exports === undefined) {
          // First event: running the body tells which style the module is.
          const module = { exports: {} };
          const result = handler.fn(module.exports, makeRequire(path), module, path);
          handler.exports = module.exports;
          handler.perEvent = !hasEventExports(module.exports);
          return handler.perEvent ? result : callExport(handler.exports, method, arg);
        }
        if (handler.perEvent) return handler.fn({}, makeRequire(path), { exports: {} }, path);
        return callExport(handler.exports, method, arg);
      } finally {
        current = null;
        event.message = undefined;
        event.peer = null;
        if (methodNumber === 3 && peerId != null) peers.delete(peerId);
      }
    },
    // What a reply is on the wire: a string (text), an ArrayBuffer (binary), or nothing.
    reply(value) {
      if (value === undefined || value === null) return null;
      return outgoing(value);
    },
  });
})();
