// A script endpoint in the exported-functions style: ws://127.0.0.1:3333/websockets/v4/service/shout
// What onMessage returns goes back to the sender; websockets.getPeer() is the connection.
import { websockets } from "sdk/net";

let connections = 0; // module state lives as long as the endpoint

export function onOpen() {
  connections++;
  const peer = websockets.getPeer();
  peer.subscribe("shout");
  return `welcome, you are connection number ${connections}`;
}

export function onMessage(message) {
  const peer = websockets.getPeer();
  if (typeof message !== "string") {
    return message; // binary comes back as it came
  }
  peer.publish("shout", `someone said: ${message}`);
  return message.toUpperCase();
}

export function onError(error) {
  console.warn(`connection ${websockets.getPeer().id} failed: ${error}`);
}

export function onClose() {
  console.log(`connection ${websockets.getPeer().id} closed`);
}
