/*
 * beacon.js: the tracker for site pages, served by the collector at /beacon.js.
 *
 *   <script defer data-site="example.com" src="https://analytics.example.com/beacon.js"></script>
 *
 * This is the readable source; `npm run build` (build.mjs) minifies it with the
 * pinned esbuild into collector/static/beacon.js, which is what is served.
 * It must stay within 2,048 bytes minified and gzipped, use no browser storage
 * (no cookie, localStorage or sessionStorage), and run under a strict
 * Content-Security-Policy: no eval, no new Function, no inline code.
 * docs/tracker.md describes every attribute and command.
 */
(function () {
  var win = window, doc = document, nav = navigator, loc = location;
  var script = doc.currentScript;
  if (!script || (win.beacon && win.beacon.loaded)) return; // pasted twice: the first copy counts

  function attr(name) {
    return script.getAttribute('data-' + name);
  }
  function has(name) {
    return script.hasAttribute('data-' + name);
  }

  var site = attr('site') || loc.hostname.replace(/^www\./, '');
  // The collector is where this script came from (its own URL, file name replaced),
  // so one URL in the snippet is the whole configuration.
  var endpoint = attr('api') || new URL('collect', script.src).href;
  var hashRouting = has('hash');
  var allowLocal = has('allow-local');
  var outbound = has('outbound');
  var downloads = attr('downloads'); // null: off; "": the default list; else "pdf,zip"
  var extensions = (downloads || 'pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg').split(',');
  var excluded = (attr('exclude') || '').split(',').filter(Boolean).map(function (glob) {
    // "*" matches any characters, "/" included; everything else is literal.
    return new RegExp('^' + glob.trim().replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
  });
  // DNT or GPC: no device-level identifier leaves the page, whatever the consent.
  var identifiersRefused = nav.doNotTrack == '1' || nav.globalPrivacyControl === true;
  var consent = null; // no flags (so no identifier) until the page calls beacon('consent', …)
  var deviceId = ''; // held in memory only, sent only while consented
  var lastPage; // URL of the last page view: never two in a row for the same URL
  var shownAt = 0; // when the page became visible, 0 while hidden
  var engagedMs = 0; // visible time of the current page view not yet sent

  function pageUrl() {
    // Without hash routing the fragment is not part of the page (and may hold a token).
    return hashRouting ? loc.href : loc.href.split('#')[0];
  }

  var localNoted; // the console says once why a local page sends nothing

  function ignored(url) {
    var local = /^localhost$|^127(\.\d+){3}$|^\[::1?\]$/.test(loc.hostname) || loc.protocol == 'file:' || nav.webdriver;
    var path = new URL(url).pathname;
    if (local && !allowLocal) {
      if (!localNoted) console.info('beacon: not counted on a local or automated page (add data-allow-local to the script tag)');
      return (localNoted = 1);
    }
    return excluded.some(function (re) {
      return re.test(path);
    });
  }

  function send(name, props, url) {
    url = url || pageUrl();
    if (ignored(url)) return;
    var body = {site: site, url: url.slice(0, 2048), screen: screen.width + 'x' + screen.height};
    if (doc.referrer) body.referrer = doc.referrer.slice(0, 2048);
    if (name) {
      body.type = 'event';
      body.name = name;
      if (props) body.props = props;
    }
    if (hashRouting) body.hash = true;
    if (consent) {
      body.consent = consent;
      if (consent.device_id && deviceId && !identifiersRefused) body.device_id = deviceId;
    }
    post(JSON.stringify(body));
  }

  // sendBeacon posts text/plain (no CORS preflight) and survives the page's end,
  // but never shows the answer; only the fetch fallback can see a 503 and retry.
  function post(body, retried) {
    if (!retried && nav.sendBeacon && nav.sendBeacon(endpoint, body)) return;
    fetch(endpoint, {method: 'POST', body: body, keepalive: true, credentials: 'omit', headers: {'Content-Type': 'text/plain'}}).then(function (response) {
      if (response.status == 503 && !retried) {
        setTimeout(post, 1000 * (parseInt(response.headers.get('Retry-After')) || 1), body, 1);
      }
    }, function () {});
  }

  // --- page views and engagement -------------------------------------------------

  function clock(running) {
    if (shownAt) engagedMs += Date.now() - shownAt;
    shownAt = running ? Date.now() : 0;
  }

  // The visible time of the page view that ends (the page is hidden or left, or the
  // next SPA page view begins): one engagement event, sent once.
  function endEngagement() {
    clock(0);
    if (engagedMs && lastPage) send('engagement', {engaged_ms: engagedMs}, lastPage);
    engagedMs = 0;
  }

  function pageview() {
    var url = pageUrl();
    if (url == lastPage) return;
    endEngagement();
    lastPage = url;
    clock(doc.visibilityState == 'visible');
    send();
  }

  // --- clicks on outbound links and downloads --------------------------------------

  function click(event) {
    var link = event.target.closest && event.target.closest('a');
    var href = link && link.href;
    if (typeof href != 'string' || (event.type == 'auxclick' && event.button != 1)) return;
    var url = href.split(/[?#]/)[0].slice(0, 512); // not the query: it may carry personal data
    if (downloads != null && extensions.indexOf(url.split('.').pop().toLowerCase()) >= 0) {
      send('File Download', {url: url});
    } else if (outbound && /^https?:$/.test(link.protocol) && link.host != loc.host) {
      send('Outbound Link: Click', {url: url});
    }
  }

  // --- commands: beacon('event', name, {props}), beacon('consent', flags, {device_id}) ---

  function command(name, arg, options) {
    if (name == 'event') {
      if (arg) send(arg, options && options.props); // no name would be a page view
    } else if (name == 'consent') {
      consent = consent || {analytics: false, device_id: false, mac: false};
      for (var flag in consent) {
        if (arg && flag in arg) consent[flag] = !!arg[flag];
      }
      if (options && options.device_id) deviceId = String(options.device_id).slice(0, 128);
    }
  }

  // Everything starts here, when the page is shown (a prerendered page may never be).
  function start() {
    var queued = (win.beacon && win.beacon.q) || [];
    win.beacon = function () {
      command.apply(null, arguments);
    };
    win.beacon.loaded = 1;
    ['pushState', 'replaceState'].forEach(function (method) {
      var original = history[method];
      history[method] = function () {
        var result = original.apply(this, arguments);
        pageview();
        return result;
      };
    });
    win.addEventListener('popstate', pageview);
    if (hashRouting) win.addEventListener('hashchange', pageview);
    doc.addEventListener('visibilitychange', function () {
      doc.visibilityState == 'hidden' ? endEngagement() : clock(1);
    });
    win.addEventListener('pagehide', endEngagement);
    win.addEventListener('pageshow', function (event) {
      if (event.persisted) { // back from the back-forward cache: shown again
        lastPage = 0;
        pageview();
      }
    });
    if (outbound || downloads != null) {
      doc.addEventListener('click', click);
      doc.addEventListener('auxclick', click);
    }
    // Calls made before the script loaded run first, so that consent given then
    // applies to the first page view.
    for (var i = 0; i < queued.length; i++) command.apply(null, queued[i]);
    pageview();
  }

  doc.prerendering ? doc.addEventListener('prerenderingchange', start, {once: true}) : start();
})();
