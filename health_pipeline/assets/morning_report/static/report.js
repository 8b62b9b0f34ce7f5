// Renders every chart from its spec (charts.js) and its data (the JSON script inside its figure),
// makes tables with class "sortable" sort by a click on a column heading, and draws the account
// pages and the owner pages' cards from their owner's data file (data/<owner page>.js, written by
// site.py): every value enters the page as text, never as markup.
(function () {
  "use strict";
  const DASH = "–";

  // -- charts and sortable tables ----------------------------------------------------------------

  function drawChart(figure, datasets) {
    const spec = structuredClone(window.REPORT_CHARTS[figure.dataset.chart]);
    spec.datasets = datasets;
    vegaEmbed(figure.querySelector(".chart-canvas"), spec, { actions: false, renderer: "svg" })
      .catch(function (error) { console.error("chart " + figure.dataset.chart + ": " + error); });
  }

  function sortKey(cell) {
    const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = Number(text.replace(/,/g, ""));
    return text !== "" && !Number.isNaN(number) ? number : text.toLowerCase();
  }

  function makeSortable(table) {
    const headings = table.tHead.rows[0].cells;
    Array.from(headings).forEach(function (heading, column) {
      heading.setAttribute("aria-sort", "none");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = heading.textContent;
      heading.replaceChildren(button);
      heading.addEventListener("click", function () {  // the button's clicks and keypresses bubble here
        const ascending = heading.getAttribute("aria-sort") !== "ascending";
        for (const other of headings) other.setAttribute("aria-sort", "none");
        heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
          const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        body.append(...rows);
      });
    });
  }

  // -- values as the templates' filters write them (site.py) -------------------------------------

  const missing = function (x) { return x === null || x === undefined || (typeof x === "number" && !Number.isFinite(x)); };
  const grouped = function (x, digits) {
    return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  };
  const number = function (x, digits) { return missing(x) ? DASH : grouped(x, digits === undefined ? 1 : digits); };
  const count = function (x) { return number(x, 0); };
  const value = function (x) {  // as the scorecard writes it: at most three decimals, none when whole
    return missing(x) ? DASH : x.toLocaleString("en-US", { maximumFractionDigits: 3 });
  };
  const signed = function (x) { return missing(x) ? DASH : (x >= 0 ? "+" : "-") + Math.abs(x).toFixed(1); };
  const bandName = function (band) { return band === null ? "no band" : band.replaceAll("_", " "); };
  const changed = function (what) { return what === null ? "not scored then" : what || "nothing"; };
  const plural = function (n) { return grouped(n, 0) + " day" + (n === 1 ? "" : "s"); };
  const renewal = function (days) {
    if (missing(days)) return DASH;
    return days === 0 ? "today" : days > 0 ? "in " + plural(days) : plural(-days) + " ago";
  };

  // -- building the DOM --------------------------------------------------------------------------

  // An element with attributes and children (strings become text nodes; null and false are skipped).
  function h(tag, attributes) {
    const element = document.createElement(tag);
    for (const [name, val] of Object.entries(attributes || {})) {
      if (val !== null && val !== undefined) element.setAttribute(name, val);
    }
    for (const child of Array.prototype.slice.call(arguments, 2).flat(Infinity)) {
      if (child !== null && child !== undefined && child !== false) element.append(child);
    }
    return element;
  }

  const badge = function (band) { return h("span", { class: "band band-" + (band || "none") }, bandName(band)); };
  const tag = function (text, kind) { return h("span", { class: kind ? "tag " + kind : "tag" }, text); };
  const sortValue = function (x) { return missing(x) ? "" : String(x); };

  function chart(name, caption, datasets) {
    const figure = h("figure", { class: "chart", "data-chart": name }, h("figcaption", {}, caption),
      h("div", { class: "chart-canvas", role: "img", "aria-label": caption }));
    figure.datasets = datasets;
    return figure;
  }

  function table(attributes, caption, headings, rows) {
    return h("div", { class: "scroll" }, h("table", attributes, h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map(function (text) { return h("th", { scope: "col" }, text); }))),
      h("tbody", {}, rows)));
  }

  // The owner data file the page loaded, and the formatting it needs (ARR in its currency).
  function siteData() {
    const site = window.REPORT_ACCOUNTS;
    const money = function (x, withSign) {
      if (missing(x)) return DASH;
      const sign = withSign ? (x >= 0 ? "+" : "−") : (x < 0 ? "−" : "");
      return sign + site.currency + grouped(Math.abs(x), 0);
    };
    const contacts = function (account) {  // a list per column, as DuckDB wrote them, to a row per contact
      const columns = window.REPORT_CONTACTS[account.account_id];
      if (!columns) return [];
      return columns.contact.map(function (_, i) {
        return Object.fromEntries(Object.keys(columns).map(function (name) { return [name, columns[name][i]]; }));
      });
    };
    return { site: site, money: money, contacts: contacts };
  }

  function ownerLink(d) {
    return h("a", { href: "../owners/" + d.site.owner_page + ".html" }, d.site.owner === null ? "(no owner)" : d.site.owner);
  }

  function changes(a) {
    return h("p", { class: "changes" }, h("strong", {}, "What changed"), " since yesterday: " + changed(a.what_changed) +
      "; over 7 days: " + changed(a.what_changed_7d) + ".");
  }

  function signals(a) {
    const parts = [];
    if (a.pulse_sentiment) parts.push("CSM pulse ", h("strong", {}, a.pulse_sentiment), ", " + a.days_since_pulse + " days ago");
    if (a.pulse_sentiment && a.open_tickets) parts.push(" · ");
    if (a.open_tickets) {
      parts.push(a.open_tickets + " open ticket" + (a.open_tickets !== 1 ? "s" : "") + ", " +
        a.open_high_priority_tickets + " high priority");
    }
    return parts;
  }

  function componentsTable(a) {
    return table({ class: "components numbers" }, "Points per component", ["component", "points", "value", "bin"],
      a.components.map(function ([component, points, possible, val, bin]) {
        return h("tr", {}, h("th", { scope: "row" }, component, component === a.top_drag ? [" ", tag("top drag")] : null),
          h("td", {}, value(points) + " / " + value(possible)), h("td", {}, value(val)), h("td", {}, bin || "missing"));
      }));
  }

  function activationTag(a) {
    return a.band_source === "activation" ? tag("band from activation (" + a.activation_status + ")") : null;
  }

  function contactName(c) {
    return [c.contact, c.is_power_contact ? [" ", tag("power")] : null];
  }

  // An owner page's card of an account: what the account page says, at a glance.
  function card(d, a) {
    const contacts = d.contacts(a);
    const power = contacts.filter(function (c) { return c.is_power_contact; });
    const powerActive = power.filter(function (c) { return c.usage_28d; });
    const quiet = contacts.filter(function (c) { return c.went_quiet; });
    return h("article", { class: "card edge-" + a.health_band, id: "account-" + a.page },
      h("h3", {}, h("a", { href: "../accounts/" + a.page + ".html" }, a.account_name || a.account_id), " ",
        h("span", { class: "muted" }, a.account_id)),
      h("p", {}, badge(a.health_band), " ", h("strong", {}, number(a.health_score)), "/100 ", activationTag(a),
        " · 7 days " + signed(a.score_delta_7d) + " · ARR " + d.money(a.arr) + " · renewal " +
        renewal(a.days_to_renewal) + " · " + a.segment),
      chart("sparkline", "Score over the last 90 days", { series: [a.history.score] }),
      changes(a),
      h("p", { class: "reason" }, a.score_reason),
      componentsTable(a),
      h("p", {}, "Usage in the last 28 days: ", h("strong", {}, value(a.usage_28d)), " (the 28 days before: " +
        value(a.usage_prev_28d) + (missing(a.usage_change_pct) ? "" : "; usage_change_pct " + value(a.usage_change_pct)) +
        "). Active contacts: " + a.active_users_28d + " of " + a.contacts_total + " (before: " + a.active_users_prev_28d + ")."),
      h("p", {}, "Power contacts active in the last 28 days: " + powerActive.length + " of " + power.length +
        powerActive.slice(0, 5).map(function (c, i) { return (i ? ", " : ": ") + c.contact; }).join("") +
        (powerActive.length > 5 ? " and " + (powerActive.length - 5) + " more" : "")),
      h("p", {}, "Went quiet in the last 28 days: ", quiet.length ? quiet.map(function (c, i) {
        return [i ? ", " : "", contactName(c)];
      }) : "nobody"));
  }

  function fact(term, ...definition) {
    return h("div", {}, h("dt", {}, term), h("dd", {}, definition));
  }

  function accountPage(d, a) {
    const name = a.account_name || a.account_id;
    const contacts = d.contacts(a);
    const active = contacts.filter(function (c) { return !c.is_dormant_90d; });
    const dormant = contacts.filter(function (c) { return c.is_dormant_90d; });
    const components = a.components.map(function ([component]) { return component; })
      .filter(function (component) { return (a.history[component] || { v: [] }).v.some(function (v) { return v !== null; }); })
      .map(function (component) { return Object.assign({}, a.history[component], { c: component }); });
    const contactsSection = !contacts.length ? h("p", {}, "No contacts are counted for this account.") : [
      active.length ? table({ class: "sortable numbers", id: "contacts" },
        "The account's " + active.length + " contacts with activity in the last 90 days, and their last 28 days",
        ["contact", "role", "active days", "sessions", "usage", "usage, 28 days before", "last seen"],
        active.map(function (c) {
          return h("tr", {}, h("th", { scope: "row" }, contactName(c), c.went_quiet ? [" ", tag("went quiet", "quiet")] : null),
            h("td", {}, c.role || DASH), h("td", {}, String(c.active_days_28d)), h("td", {}, String(c.sessions_28d)),
            h("td", {}, String(c.usage_28d)), h("td", {}, String(c.usage_prev_28d)), h("td", {}, c.last_seen_on || "never"));
        })) : null,
      dormant.length ? h("p", { id: "dormant-contacts" }, h("strong", {}, "No activity in the last 90 days (" + dormant.length + "):"), " ",
        dormant.map(function (c, i) { return [i ? ", " : "", contactName(c)]; })) : null];
    const bandChanges = a.band_changes.length ? table({ id: "band-history" },
      "Every band change up to " + document.querySelector("time").getAttribute("datetime") + ", newest first: " + a.band_changes.length,
      ["date", "from", "to", "score", "what changed since the day before", "why, then"],
      a.band_changes.map(function (c) {
        return h("tr", {}, h("td", {}, c.snapshot_date), h("td", {}, badge(c.from_band)), h("td", {}, badge(c.to_band)),
          h("td", { class: "num" }, number(c.health_score)), h("td", { class: "reason" }, changed(c.what_changed)),
          h("td", { class: "reason" }, c.score_reason));
      })) : h("p", {}, "The band has not changed.");
    const sig = signals(a);
    return [
      h("h1", {}, name),
      h("dl", { class: "facts" }, fact("account id", a.account_id), fact("owner", ownerLink(d)), fact("plan", a.plan || DASH),
        fact("status", a.status || DASH), fact("ARR", d.money(a.arr)), fact("vertical", a.vertical || DASH),
        fact("customer since", a.customer_since || DASH),
        fact("renewal", (a.renewal_date || DASH) + (a.renewal_date ? " (" + renewal(a.days_to_renewal) + ")" : "")),
        fact("segment", a.segment)),
      h("p", { class: "lede" }, badge(a.health_band), " ", h("strong", {}, number(a.health_score)), "/100 ", activationTag(a),
        " · 7 days " + signed(a.score_delta_7d) + " · 28 days " + signed(a.score_delta_28d)),
      changes(a),
      h("p", { class: "reason" }, "Now: " + a.score_reason),
      a.band_source === "activation" ? h("p", { class: "muted" }, "In onboarding, the band comes from activation (" +
        a.activation_status + "), not from the score's cut-offs below.") : null,
      sig.length ? h("p", { id: "signals" }, sig) : null,
      h("section", {}, h("h2", {}, "The last 90 days"),
        chart("account_score", "Health score per day, with the segment's band cut-offs dashed",
          { series: [a.history.score], edges: a.cutoffs }),
        chart("account_components", "Each component's points as a percentage of its possible points, per day",
          { series: components }),
        componentsTable(a)),
      h("section", {}, h("h2", {}, "Contacts"), contactsSection),
      h("section", {}, h("h2", {}, "Band changes"), bandChanges),
    ];
  }

  // The account of this page: its file name is the account's page name, and data/accounts.js
  // names the owner's data file that holds it.
  function fillAccountPage(container) {
    const page = decodeURIComponent(location.pathname.split("/").pop()).replace(/\.html$/, "");
    const owner = window.REPORT_OWNER_PAGES[page];
    const notFound = function () { container.replaceChildren(h("p", {}, "This report has no account page " + page + ".")); };
    if (owner === undefined) return notFound();
    const script = h("script", { src: "../data/" + owner + ".js" });
    script.addEventListener("load", function () {
      const d = siteData();
      const account = d.site.accounts.find(function (a) { return a.page === page; });
      if (!account) return notFound();
      const name = account.account_name || account.account_id;
      document.title = name + " · health on " + document.querySelector("time").getAttribute("datetime");
      document.querySelector("header nav").append(" › ", ownerLink(d), " › ", h("span", {}, name));
      container.replaceChildren(...accountPage(d, account).flat().filter(Boolean));
      finish(container);
    });
    document.body.append(script);
  }

  function finish(root) {
    for (const figure of root.querySelectorAll("figure[data-chart]")) {
      drawChart(figure, figure.datasets || JSON.parse(figure.querySelector("script[type='application/json']").textContent));
    }
    for (const sortable of root.querySelectorAll("table.sortable")) makeSortable(sortable);
  }

  const cards = document.getElementById("cards");
  if (cards) {
    const d = siteData();
    cards.replaceChildren(...d.site.accounts.map(function (a) { return card(d, a); }));
  }
  finish(document);
  const account = document.getElementById("account");
  if (account) fillAccountPage(account);
})();
