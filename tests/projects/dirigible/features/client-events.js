// The outbound clients' events, reported to the connection that created them.
import { websockets } from "sdk/net";

function report(text) {
  if (globalThis.reporter) globalThis.reporter.send(text);
}

export function onOpen() { report(`client onopen`); }
export function onMessage(message) { report(`client onmessage ${message}`); }
export function onError(error) { report(`client onerror ${error}`); }
export function onClose() { report(`client onclose ${websockets.getMethod()}`); }
