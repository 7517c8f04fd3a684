// Type-checked by types.test.mjs (tsc --strict): the seed's fritz2 code, in TypeScript, against switchboard.d.ts.
import { websocket, createStore, Resource, syncWith, syncListWith, SendError, type SessionState, type SyncStatus } from "../switchboard.js";

interface Person {
  _id: string;
  name: string;
  age: number;
}

export async function example(): Promise<void> {
  const socket = websocket("ws://localhost:3333", "chat.v1").append("echo").reconnect({ minDelay: 100 }).maxQueuedBytes(1 << 20);
  const session = socket.connect();
  const off: () => void = session.isOpen.subscribe((open: boolean) => console.log(open));
  off();
  session.state.subscribe((state: SessionState) => {
    if (state.state === "reconnecting") console.log(state.delay, state.close.code);
  });
  for await (const text of session.messages.body) {
    const upper: string = text.toUpperCase();
    console.log(upper);
    break;
  }
  session.messages.arrayBuffer.subscribe((buffer: ArrayBuffer) => buffer.byteLength);
  try {
    await session.send(new Uint8Array([1, 2, 3]));
  } catch (error) {
    if (error instanceof SendError && error.kind === "closed") console.log(error.code, error.reason);
  }
  const close = await session.close(1000, "bye");
  console.log(close.wasClean);

  const people = new Resource<Person>((p) => p._id, undefined, { _id: "", name: "", age: 0 });
  const person = createStore<Person>({ _id: "ada", name: "Ada", age: 36 });
  const sync = syncWith(person, websocket("ws://localhost:3333/sync/people"), people, { storage: null });
  person.update((p) => ({ ...p, age: p.age + 1 }));
  sync.status.subscribe((status: SyncStatus) => console.log(status.state, status.version, status.pending));
  sync.rejections.subscribe((rejection) => console.log(rejection.reason, rejection.current?.version));
  const version: number | null = await sync.synced();
  console.log(version);
  const list = createStore<Person[]>([]);
  const all = syncListWith(list, websocket("ws://localhost:3333/sync/people"), people);
  await all.stop();
}
