// Entry point of the engine worker thread: hosts one ModelSession and runs the forward passes so
// the application's event loop stays free.
import { parentPort } from "node:worker_threads";
import type { WorkerReply, WorkerRequest } from "./protocol.js";
import { toWireError } from "./protocol.js";
import { ModelSession, openModelFile } from "./session.js";

const port = parentPort;
if (!port) throw new Error("the engine worker must run in a worker thread");
let session: ModelSession | undefined;
const send = (m: WorkerReply, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer ?? []);

port.on("message", (msg: WorkerRequest) => {
  switch (msg.type) {
    case "init":
      try {
        send({ type: "progress", phase: "reading", fraction: 0 });
        session = new ModelSession(openModelFile(msg.path), msg.options, (p) =>
          send({ type: "progress", ...p }),
        );
        send({
          type: "ready",
          config: session.config,
          contextSize: session.contextSize,
          backend: session.backendName,
        });
      } catch (e) {
        send({ type: "error", error: toWireError(e) });
      }
      return;
    case "generate": {
      const flag = new Int32Array(msg.abort);
      try {
        if (!session) throw new Error("model not loaded");
        const gen = session.generate(msg.prompt, msg.options, () => Atomics.load(flag, 0) !== 0);
        let step = gen.next();
        while (!step.done) {
          send({ type: "token", id: msg.id, token: step.value });
          step = gen.next();
        }
        send({ type: "done", id: msg.id, result: step.value });
      } catch (e) {
        send({ type: "error", id: msg.id, error: toWireError(e) });
      }
      return;
    }
    case "logits":
      try {
        if (!session) throw new Error("model not loaded");
        const data = session.logits(msg.tokens);
        send({ type: "logits", id: msg.id, data }, [data.buffer as ArrayBuffer]);
      } catch (e) {
        send({ type: "error", id: msg.id, error: toWireError(e) });
      }
      return;
    case "dispose":
      session?.dispose();
      session = undefined;
      port.close();
      return;
  }
});
