// The funnel panel: one of the site's funnels (`beacon funnels add`), chosen in the
// panel, drawn as a bar per step: the visitors who did it and every step before it in
// one visit, their share of the first step and of the previous one, and the drop-off.
import {ApiError, stats} from './api.js';
import {h, replaceChildren} from './dom.js';
import {formatMetric} from './metrics.js';

const EXAMPLE = 'Signup --step page:/pricing --step event:Signup';
const percent = value => `${(value ?? 0).toFixed(1)}%`;

// ctx: {query() → the API parameters of the view (site, period, filters),
//       funnels() → the names of the site's funnels}
export function createFunnelPanel(ctx) {
  let chosen = null; // the funnel shown; kept while the site's funnels include it
  let controller = null;
  const title = h('h2', {id: 'panel-funnels'}, 'Funnels');
  const picker = h('select', {className: 'choice', 'aria-label': 'Funnel', onchange: event => {
    chosen = event.target.value;
    load();
  }});
  const body = h('div', {className: 'panel-body'});
  const element = h('section', {className: 'panel panel-funnels', 'aria-labelledby': title.id, dataset: {panel: 'funnels'}},
    h('header', {className: 'panel-head'}, title, picker), body);

  function showPicker(names) {
    picker.hidden = names.length < 2;
    replaceChildren(picker, names.map(name => h('option', {value: name, selected: name === chosen}, name)));
  }

  async function load() {
    const names = ctx.funnels();
    if (!names.includes(chosen)) chosen = names[0] ?? null;
    showPicker(names);
    controller?.abort();
    if (chosen === null) {
      replaceChildren(body, noFunnel(ctx.query().site_id));
      element.dataset.state = 'ready';
      return;
    }
    controller = new AbortController();
    const {signal} = controller;
    element.dataset.state = 'loading';
    body.setAttribute('aria-busy', 'true');
    try {
      const answer = await stats('funnel', {...ctx.query(), funnel: chosen}, signal);
      if (signal.aborted) return;
      replaceChildren(body, summary(answer.results), steps(answer.results.steps));
      element.dataset.state = 'ready';
    } catch (error) {
      if (signal.aborted) return;
      // A 400 is a view the funnel cannot take (a goal filter): said plainly, not as a failure.
      const refused = error instanceof ApiError && error.status === 400;
      replaceChildren(body, h('p', {className: refused ? 'notice' : 'notice error'},
        `${refused ? 'The funnel' : 'Could not load the funnel'} ${chosen}: ${error.message}`));
      element.dataset.state = refused ? 'ready' : 'failed';
    } finally {
      if (!signal.aborted) body.removeAttribute('aria-busy');
    }
  }

  return {element, load};
}

function noFunnel(site) {
  return h('p', {className: 'notice empty'}, 'No funnel yet. Funnels are set on the server: ',
    h('code', {}, `beacon funnels add ${site} ${EXAMPLE}`), '.');
}

function summary(result) {
  return h('p', {className: 'funnel-summary'},
    `${formatMetric('visitors', result.entering_visitors)} of ${formatMetric('visitors', result.all_visitors)} `,
    `visitors entered the funnel; ${percent(result.steps.at(-1).conversion_rate)} of them completed it.`);
}

function steps(found) {
  const first = Math.max(1, found[0].visitors);
  return h('ol', {className: 'funnel-steps'}, found.map((step, i) => {
    const bar = h('span', {className: 'funnel-bar', 'aria-hidden': 'true'});
    bar.style.width = `${(100 * step.visitors) / first}%`;
    const figures = i === 0 ? 'Entered the funnel' : `${percent(step.conversion_rate)} of the first step · ` +
      `${percent(step.conversion_rate_step)} of the previous · ` +
      `${formatMetric('visitors', step.dropoff)} dropped off (${percent(step.dropoff_percentage)})`;
    return h('li', {className: 'funnel-step', dataset: {
      visitors: step.visitors, conversion: step.conversion_rate, conversionStep: step.conversion_rate_step,
      dropoff: step.dropoff,
    }},
    h('div', {className: 'funnel-step-head'},
      h('span', {className: 'funnel-label'}, `${i + 1}. ${step.label}`),
      h('span', {className: 'funnel-visitors'}, `${formatMetric('visitors', step.visitors)} visitors`)),
    h('div', {className: 'funnel-track'}, bar),
    h('p', {className: 'funnel-figures'}, figures));
  }));
}
