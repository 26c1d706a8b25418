/* django-triggers admin: zoom and pan of the session page's diagram.
 *
 * The diagram is drawn on the server; it first fits its panel. The buttons
 * zoom it in and out from there, and the panel scrolls, or is dragged, to
 * pan. Without JavaScript, the diagram still fits its panel.
 */
(function () {
    "use strict";
    document.querySelectorAll(".dt-graph").forEach(function (panel) {
        var svg = panel.querySelector("svg");
        var tools = panel.parentNode.querySelector(".dt-graph-tools");
        if (!svg || !tools) {
            return;
        }
        var natural = parseFloat(svg.getAttribute("width")) || svg.getBoundingClientRect().width;
        var scale = null; // null: fit the panel

        function fitScale() {
            return Math.min(1, panel.clientWidth / natural);
        }
        function apply() {
            if (scale === null) {
                panel.classList.add("dt-graph-fit");
                svg.style.width = "";
            } else {
                panel.classList.remove("dt-graph-fit");
                svg.style.width = Math.round(natural * scale) + "px";
            }
        }
        tools.hidden = false;
        tools.addEventListener("click", function (event) {
            var action = event.target.getAttribute("data-zoom");
            var current = scale === null ? fitScale() : scale;
            if (action === "fit") {
                scale = null;
            } else if (action === "in") {
                scale = Math.min(current * 1.25, 4);
            } else if (action === "out") {
                scale = Math.max(current / 1.25, 0.1);
            }
            apply();
        });

        var drag = null;
        panel.addEventListener("pointerdown", function (event) {
            if (event.button !== 0 || scale === null) {
                return;
            }
            drag = {x: event.clientX, y: event.clientY, left: panel.scrollLeft, top: panel.scrollTop};
            panel.classList.add("dt-graph-dragging");
        });
        window.addEventListener("pointermove", function (event) {
            if (drag) {
                panel.scrollLeft = drag.left - (event.clientX - drag.x);
                panel.scrollTop = drag.top - (event.clientY - drag.y);
            }
        });
        window.addEventListener("pointerup", function () {
            drag = null;
            panel.classList.remove("dt-graph-dragging");
        });
    });
})();
