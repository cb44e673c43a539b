/** `node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP]`: where a V8 CPU profile spent its time. */
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';

const [file, top] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
process.stdout.write(`${formatProfile(summarizeProfile(file), Number(top ?? 25))}\n`);
