import { it } from 'vitest';
import { startApp } from './helpers.js';
it('p', async () => {
  const t = await startApp();
  console.log(t.app.printRoutes({ commonPrefix: false }));
  console.log(t.app.printRoutes({ commonPrefix: false, method: 'GET' }));
  await t.close();
});
