// The seed's on-premises `LicenseManager` (the product's planning document, "On-Premises
// License Enforcement"; docs/API.md, "The seed's types"), run in Node against a real `ledger` server by
// api/tests/validation.rs. The class is the seed's text with the TypeScript types and
// `private` modifiers stripped, nothing else changed; the seed gives it no constructor,
// so the key is set on the instance, as the seed's (TypeScript-only) `private` allows.
//
// Usage: node license-manager.mjs [ACTION] [API_BASE] [LICENSE_KEY]
//   ACTION      `check` (default): validateLicense() and then the feature and limit checks;
//               `validate`: validateLicense() only.
//   API_BASE    the server's `/api/v1` (or env LEDGER_API_BASE)
//   LICENSE_KEY the key (or env LEDGER_LICENSE_KEY)
// Prints one line of JSON.

const [action = 'check', apiBase, licenseKey] = process.argv.slice(2);
const API_BASE = apiBase ?? process.env.LEDGER_API_BASE;
const LICENSE_KEY = licenseKey ?? process.env.LEDGER_LICENSE_KEY;
if (!API_BASE || !LICENSE_KEY || !['check', 'validate'].includes(action)) {
  console.error('usage: node license-manager.mjs [check|validate] API_BASE LICENSE_KEY');
  process.exit(2);
}

// ---- The seed's class, types stripped. ----
// License validation client
class LicenseManager {
  licenseKey;
  subscriptionData;
  lastValidation;
  
  async validateLicense() {
    try {
      const response = await fetch(`${API_BASE}/license/validate`, {
        headers: { 'Authorization': `Bearer ${this.licenseKey}` }
      });
      
      const validation = await response.json();
      this.subscriptionData = validation.subscription;
      this.lastValidation = new Date();
      
      return validation.isValid && !validation.isExpired;
    } catch (error) {
      // Graceful degradation - allow continued use for 7 days
      const daysSinceValidation = (Date.now() - this.lastValidation.getTime()) / (1000 * 60 * 60 * 24);
      return daysSinceValidation < 7;
    }
  }
  
  checkFeatureAccess(feature) {
    return this.subscriptionData.allowedFeatures.includes(feature);
  }
  
  checkUsageLimit(metric, currentValue) {
    const limit = this.subscriptionData.limits[metric];
    return currentValue < limit;
  }
}
// ---- End of the seed's class. ----

// Each call's result, or the error it threw, so one failure does not hide the others.
async function attempt(call) {
  try {
    return await call();
  } catch (error) {
    return { error: String(error) };
  }
}

const manager = new LicenseManager();
manager.licenseKey = LICENSE_KEY;
const result = { validateLicense: await attempt(() => manager.validateLicense()) };
if (action === 'check') {
  result.basic_analytics = await attempt(() => manager.checkFeatureAccess('basic_analytics'));
  result.white_labeling = await attempt(() => manager.checkFeatureAccess('white_labeling'));
  result.maxUsers_3 = await attempt(() => manager.checkUsageLimit('maxUsers', 3));
}
console.log(JSON.stringify(result));
