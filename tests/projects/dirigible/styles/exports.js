import { websockets } from "sdk/net";

let opened = 0;

function context(arg) {
  return {
    method: websockets.getMethod(),
    message: websockets.getMessage() ?? null,
    error: websockets.getError() ?? null,
    arg: arg ?? null,
    flags: [websockets.isOnOpen(), websockets.isOnMessage(), websockets.isOnError(), websockets.isOnClose()],
    opened,
  };
}

export function onOpen() {
  opened++;
  return context();
}

export function onMessage(message) {
  return context(message);
}
