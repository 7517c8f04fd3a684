// "connect URI": opens an outbound client whose events go to features/client-events; "list" lists
// the clients; "send ID TEXT" and "close ID" drive one; "bad URI" tries a malformed URI.
import { websockets } from "sdk/net";

export function onMessage(message) {
  const [command, argument, ...rest] = message.split(" ");
  if (command === "connect") {
    const client = websockets.createWebsocket(argument, "features/client-events");
    globalThis.reporter = websockets.getPeer();
    return { id: client.id, uri: client.uri, handler: client.handler, engine: client.engine };
  }
  if (command === "list") return websockets.getClients().map((c) => ({ uri: c.uri, handler: c.handler, state: c.state }));
  if (command === "byhandler") {
    const client = websockets.getClientByHandler(argument);
    return client === null ? "null" : client.id;
  }
  if (command === "byid") {
    const client = websockets.getClient(argument);
    return client === null ? "null" : client.uri;
  }
  if (command === "send") { websockets.getClient(argument).send(rest.join(" ")); return "sent"; }
  if (command === "close") { websockets.getClient(argument).close(); return "closing"; }
  if (command === "bad") {
    try {
      websockets.createWebsocket(argument, "features/client-events");
      return "no error";
    } catch (error) {
      return `${error.name}: ${error.message}`;
    }
  }
  return "?";
}
