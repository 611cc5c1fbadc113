// A Worker that resolves the conformance corpus: POST the cases, get the answers.
// SNAPSHOT is a data blob binding (the compiled tests/conformance/table.jsonl).
import wasm from '../../../edge-js/pkg/edgeroute_edge_js_bg.wasm';
import { allocations, initModule, Router } from '../../../edge-js/pkg/index.js';

initModule(wasm);

export default {
  async fetch(request, env) {
    const cases = await request.json();
    const router = Router.fromBytes(env.SNAPSHOT);
    for (const c of cases) router.resolve(c.host, c.path);
    const before = allocations();
    const answers = cases.map((c) => router.resolve(c.host, c.path));
    return Response.json({ answers, allocations: allocations() - before, id: router.id });
  },
};
