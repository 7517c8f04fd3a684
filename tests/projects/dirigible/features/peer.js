// Commands: "sub T", "unsub T", "pub T TEXT", "close CODE REASON", "twice TEXT", "json", "id";
// binary messages come back with every byte incremented.
import { websockets } from "sdk/net";

export function onMessage(message) {
  const peer = websockets.getPeer();
  if (typeof message !== "string") {
    return new Uint8Array(message).map((b) => b + 1);
  }
  const [command, first, ...rest] = message.split(" ");
  switch (command) {
    case "sub": return `subscribed ${peer.subscribe(first)}`;
    case "unsub": return `unsubscribed ${peer.unsubscribe(first)}`;
    case "pub": return `delivered ${peer.publish(first, rest.join(" "))}`;
    case "close": peer.close(Number(first), rest.join(" ")); return undefined;
    case "twice": peer.send(first); peer.send(first); return undefined;
    case "json": return { ok: true, list: [1, 2] };
    case "id": return peer.id;
    case "badclose": peer.close(1005, "reserved"); return "unreachable";
    default: return `unknown ${command}`;
  }
}
