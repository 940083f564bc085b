/** The README's whole example program (kept identical but for the import; compiled by tsc). */
import { ClientError, LicenseManager, UsageReporter, type ConfigInput } from "../src/index"; // installed: from "@ledger/license-client"

const config: ConfigInput = {
  baseUrl: process.env.LEDGER_URL ?? "https://ledger.example.com",
  licenseKey: process.env.LEDGER_LICENSE_KEY ?? "",
  stateDir: "/var/lib/platform/license",     // one process per directory
  // The server's lease key(s), pinned at install: `leases.current` (and
  // `leases.next` when announced) from GET /api/v1/keys.
  leasePublicKeys: [process.env.LEDGER_LEASE_KEY ?? ""],
  deploymentId: "plant-7",
};

const license = new LicenseManager(config);
const usage = new UsageReporter(config);

async function validate(): Promise<void> {
  try {
    const status = await license.validate();   // online, or the stored lease offline
    switch (status.state) {
      case "valid":
        console.log(`licensed: ${status.tier} (${status.code}), offline use until ${status.leaseExpiresAt.toISOString()}` +
          (status.offline ? `; offline: ${status.warnings.join("; ")}` : ""));
        break;
      case "invalid":
        console.error(`the license is not valid: ${status.code}`);   // signed by the server
        break;
      case "clock_tampered":
        console.error("the clock was set back: put it right, or reach the server");
        break;
      case "no_lease":
        console.error("no valid lease: the server must be reached");
    }
  } catch (e) {
    // A 400, an answer outside the contract, or a lease that did not verify.
    if (e instanceof ClientError) console.error(`validation: ${e.kind}: ${e.message}`);
    else throw e;
  }
}

function addUser(activeUsers: number): boolean {
  const decision = license.check({ kind: "add_user", activeUsers });
  if (!decision.allowed) console.error(`refused: ${JSON.stringify(decision.denial)}`);
  return decision.allowed;
}

async function reportYesterday(activeUsers: number, apiCallsCount: number): Promise<void> {
  const day = new Date(Date.now() - 24 * 3600 * 1000).toISOString().slice(0, 10);
  usage.enqueue({ reportingPeriod: day, metrics: { activeUsers, dataVolumeGB: 120.5, apiCallsCount, trainingHours: 1.25 } });
  const outcome = await usage.flush();         // in order; kept until acknowledged
  if (outcome.stopped) console.warn(`usage: ${outcome.remaining} queued (${outcome.stopped})`);
}

async function main(): Promise<void> {
  await validate();
  setInterval(() => void validate(), 3600 * 1000);
  if (license.checkFeatureAccess("advanced_analytics")) console.log("advanced analytics: on");
  if (license.checkUsageLimit("maxUsers", 4)) console.log("a fifth user may be added");
  addUser(4);
  await reportYesterday(4, 1200);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
