using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Sliding-window masks in decomposed graphs, rooted at the comparison that limits key distance:
/// <c>k &gt; q - window</c> (HF's sliding_window_overlay), <c>q - window &lt; k</c>, or <c>q - k &lt; window</c>,
/// where window is a scalar constant. The attention recognizer tries them in the cone behind a mask.</summary>
public static class WindowMaskRules
{
    private static Pattern Window => P.AnyScalar("window");

    public static IReadOnlyList<Rule<long>> All { get; } =
    [
        Rule("WindowMask/k>q-w", P.Op("Greater", P.Var("k"), P.Op("Sub", P.Var("q"), Window))),
        Rule("WindowMask/q-w<k", P.Op("Less", P.Op("Sub", P.Var("q"), Window), P.Var("k"))),
        Rule("WindowMask/q-k<w", P.Op("Less", P.Op("Sub", P.Var("q"), P.Var("k")), Window)),
        Rule("WindowMask/w>q-k", P.Op("Greater", Window, P.Op("Sub", P.Var("q"), P.Var("k")))),
    ];

    private static Rule<long> Rule(string name, Pattern pattern) => new(name, pattern,
        m => Check.Require(ConstantResolver.ScalarOf(m["window"]) is double w && w >= 2 && w == Math.Floor(w),
            "the distance limit is not a whole number of at least 2 keys", m["window"]),
        m => (long)ConstantResolver.ScalarOf(m["window"])!.Value,
        allowEscapes: true);

    /// <summary>The window behind <paramref name="mask"/>: the first comparison within <paramref name="limit"/> nodes
    /// upstream that a rule matches, or null (a causal/padding mask only).</summary>
    public static long? Find(Matcher matcher, Value? mask, int limit = 32)
    {
        if (mask is null) return null;
        var queue = new Queue<Value>([mask]);
        var seen = new HashSet<Node>();
        while (queue.Count > 0 && seen.Count < limit)
        {
            var v = queue.Dequeue();
            if (v.Producer is not { } p || !seen.Add(p)) continue;
            if (p.Is("Greater") || p.Is("Less"))
                foreach (var rule in All)
                    if (matcher.TryMatch(rule, v) is { } m) return rule.Build(m);
            foreach (var input in p.Inputs)
                if (input is not null && ConstantResolver.Resolve(input) is null) queue.Enqueue(input);
        }
        return null;
    }
}
