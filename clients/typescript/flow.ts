// The flow of a publisher's back end, through a TypeScript client generated from a running server's
// OpenAPI document (`openapi-typescript` types, `openapi-fetch` calls): create a scoped key, add
// items, set consent, post events, decide with explanations, export and erase the person, and check
// typed errors on the way. Run by scripts/ci-clients.sh, which generates `./attune.d.ts` beside it,
// type-checks with `tsc` and runs it with `tsx`:
//
//     ATTUNE_URL=http://127.0.0.1:7700 ATTUNE_ADMIN_KEY=... npx tsx flow.ts

import createClient from "openapi-fetch";
import type { components, paths } from "./attune";

type ErrorCode = components["schemas"]["ErrorDetail"]["code"];

const PREFIX = "ts";
const TAGS = ["sleep", "breathing", "stress_relief", "morning", "focus", "fitness"];

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
  console.log(`  ok  ${what}`);
}

/** The typed error envelope's code, if the answer is an error. */
function codeOf(error: { error: { code: ErrorCode } } | undefined): ErrorCode | undefined {
  return error?.error.code;
}

async function main(): Promise<void> {
  const baseUrl = process.env.ATTUNE_URL ?? "http://127.0.0.1:7700";
  const admin = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${process.env.ATTUNE_ADMIN_KEY}` } });

  // A scoped key for the back end: what the flow needs, not admin.
  const scopes = ["catalog:write", "events:write", "decide", "users:read", "users:write"];
  const created = await admin.POST("/v1/keys", { body: { name: `${PREFIX}-backend`, scopes } });
  check(created.data !== undefined && created.data.scopes.length === scopes.length, "a scoped key is created");
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${created.data!.key}` } });

  // Errors are typed: the envelope and its code.
  const missing = await api.GET("/v1/items/{id}", { params: { path: { id: `${PREFIX}-no-such-item` } } });
  check(
    missing.response.status === 404 && codeOf(missing.error) === "not_found",
    "an unknown item is a typed 404 with code not_found",
  );
  const forbidden = await api.POST("/v1/keys", { body: { name: "x", scopes: ["admin"] } });
  check(codeOf(forbidden.error) === "forbidden", "a scoped key cannot create keys (typed 403, code forbidden)");

  const items = Array.from({ length: 8 }, (_, i) => ({
    id: `${PREFIX}-item-${i}`,
    kind: "article",
    title: `Article ${i}`,
    tags: [TAGS[i % TAGS.length], TAGS[(i + 1) % TAGS.length]],
  }));
  const upserted = await api.PUT("/v1/items", { body: { items } });
  check(upserted.data?.upserted === items.length, `${items.length} items are created`);
  const item = await api.GET("/v1/items/{id}", { params: { path: { id: `${PREFIX}-item-0` } } });
  check(item.data?.title === "Article 0" && item.data.available, "an item reads back");

  const user = `${PREFIX}-user-1`;
  const consent = await api.PUT("/v1/users/{id}/consent", {
    params: { path: { id: user } },
    body: { personalization: true, contextual: false, analytics: true, email: false, push: false },
  });
  check(consent.data?.personalization === true && consent.data.contextual === false, "consent is set");

  const plan: [string, number][] = [["view", 0], ["click", 0], ["view", 1], ["purchase", 1], ["view", 2]];
  const events = plan.map(([type, i], n) => ({ id: `${PREFIX}-evt-${n}`, type, user, item: `${PREFIX}-item-${i}` }));
  const posted = await api.POST("/v1/events", { body: { events } });
  check(posted.data?.accepted === events.length && posted.data.rejected.length === 0, "events are accepted");
  const again = await api.POST("/v1/events", { body: { events } });
  check(again.data?.duplicates === events.length, "repeated event ids are duplicates");

  const invalid = await api.POST("/v1/decide", { body: { user, placements: [{ slot: "home_feed", count: 0 }] } });
  check(
    invalid.response.status === 400 && codeOf(invalid.error) === "invalid_count",
    "a count of 0 is a typed 400 with code invalid_count",
  );
  const decision = await api.POST("/v1/decide", {
    body: { user, explain: true, placements: [{ slot: "home_feed", count: 4 }] },
  });
  check(decision.data?.decision_id.startsWith("dec-") === true, "a decision is made");
  const shown = decision.data!.placements[0].items;
  check(decision.data!.placements[0].slot === "home_feed" && shown.length > 0, `home_feed holds ${shown.length} items`);
  check(shown.every((i) => i.reasons.length >= 1 && i.reasons[0].text.length > 0), "every item is explained");
  check(!shown.some((i) => i.id === `${PREFIX}-item-1`), "the purchased item is not recommended");

  const profile = await api.GET("/v1/users/{id}", { params: { path: { id: user } } });
  check(profile.data?.events === events.length, "the profile counts the events");

  const exported = await api.GET("/v1/users/{id}/export", { params: { path: { id: user } } });
  check(
    exported.data?.user.id === user && exported.data.events.length === events.length,
    "the export holds the person's events",
  );

  const erased = await api.DELETE("/v1/users/{id}", { params: { path: { id: user } } });
  check(
    erased.data?.erased === true && erased.data.receipt.events === events.length,
    "the person is erased, with a receipt",
  );
  const gone = await api.GET("/v1/users/{id}", { params: { path: { id: user } } });
  check(
    gone.response.status === 404 && codeOf(gone.error) === "not_found",
    "afterwards the person is unknown (typed 404)",
  );
}

main().then(
  () => console.log("typescript client flow: passed"),
  (error: unknown) => {
    console.error(`typescript client flow FAILED: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
