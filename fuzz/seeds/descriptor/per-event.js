import { websockets } from "sdk/net";

// Runs once per event: top-level state starts over each time; globalThis persists.
let calls = 0;
calls++;
globalThis.events = (globalThis.events || 0) + 1;
const peer = websockets.getPeer();
if (websockets.isOnOpen()) {
  peer.send(`per-event open ${websockets.getMethod()} calls=${calls}`);
} else if (websockets.isOnMessage()) {
  peer.send(`per-event message ${websockets.getMessage()} calls=${calls} events=${globalThis.events}`);
}
