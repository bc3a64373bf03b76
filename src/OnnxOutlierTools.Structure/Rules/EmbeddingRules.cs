using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Embedding rules, rooted at the embedding output: ORT's fused EmbedLayerNormalization, and a row
/// lookup (Gather) of a token table by the token ids, plus up to two more looked-up tables added to it
/// (learned positions, token types) in any order.</summary>
public static class EmbeddingRules
{
    private const string Ms = "com.microsoft";

    // Ops that carry token or position ids through unchanged in value (GPT-2 exports Reshape a Slice of input_ids).
    private static readonly HashSet<string> IndexOps = ["Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Identity", "Slice", "Expand", "Transpose"];

    /// <summary>Builds the rule set, richest variant first; <paramref name="isTokenIds"/> tells which values are
    /// the token ids (see <see cref="TokenIds"/>).</summary>
    public static IReadOnlyList<Rule<EmbeddingRole>> Create(Func<Value, bool> isTokenIds)
    {
        var ids = P.Var("ids", isTokenIds, "token ids (the token-id graph input, through Reshape/Slice/Cast)");
        var token = Lookup("tokens", ids, "gather");
        var first = Lookup("table1", P.Var("indices1"), "gather1");
        var second = Lookup("table2", P.Var("indices2"), "gather2");
        // allowEscapes: an embedding is only located, never rewritten as a unit, so its inner sums may be read elsewhere.
        return
        [
            EmbedLayerNormalization(),
            new("Embedding/Gather+2 tables", P.Commuted("Add", P.Commuted("Add", token, first), second), CheckTables, Build, allowEscapes: true),
            new("Embedding/Gather+table", P.Commuted("Add", token, first), CheckTables, Build, allowEscapes: true),
            new("Embedding/Gather", token, null, Build, allowEscapes: true),
        ];
    }

    /// <summary>The outermost match (a token Gather inside a Gather+table match is not a second embedding),
    /// richest rule first, then in node order. <paramref name="candidates"/> counts the outermost matches.</summary>
    public static EmbeddingRole? Find(Matcher matcher, IReadOnlyList<Rule<EmbeddingRole>> rules, out int candidates)
    {
        var found = matcher.ApplyFirst(rules);
        found.RemoveAll(e => found.Any(other => other != e && other.Nodes.Contains(e.Output.Producer!)));
        candidates = found.Count;
        return found.FirstOrDefault();
    }

    /// <summary>Which values are token ids in <paramref name="graph"/>: values reaching the graph input named
    /// like input_ids, or, without one, any non-float graph input that is not named like positions, token
    /// types or a mask.</summary>
    public static Func<Value, bool> TokenIds(Graph graph)
    {
        var inputs = GraphWalk.ScopeInputs(graph).Where(i => !i.IsInitializer).ToList();
        var named = inputs.Where(i => NamedLike(i, "input_ids")).ToList();
        var chosen = (named.Count > 0 ? named
            : inputs.Where(i => i.ElementType?.IsFloatingPoint() != true && !NamedLike(i, "position", "token_type", "segment", "mask"))).ToHashSet();
        return v => chosen.Contains(IndexSource(v));
    }

    /// <summary>The value a Gather's indices come from, through <see cref="IndexOps"/> (first inputs).</summary>
    public static Value IndexSource(Value indices)
    {
        var v = indices;
        for (int i = 0; i < 8 && v.Producer is { IsDefaultDomain: true } p && IndexOps.Contains(p.OpType) && p.Input(0) is { } input; i++) v = input;
        return v;
    }

    private static bool NamedLike(Value v, params string[] parts) => parts.Any(p => v.Name.Contains(p, StringComparison.OrdinalIgnoreCase));

    private static Pattern Table(string name) =>
        P.Const(name, t => t.Dims.Count == 2 && t.DataType.IsFloatingPoint(), "a 2-D floating-point table");

    private static Pattern Lookup(string table, Pattern indices, string bindAs) =>
        P.Node(["Gather"], [Table(table), indices], bindAs: bindAs, check: n => n.GetInt("axis", 0) == 0, checkText: "a row lookup (axis 0)");

    /// <summary>EmbedLayerNormalization(input_ids, segment_ids?, word, position, segment?, gamma, beta, ...):
    /// the embedding output is the normalized output 0, as the first block reads it.</summary>
    private static Rule<EmbeddingRole> EmbedLayerNormalization() => new(
        "Embedding/EmbedLayerNormalization",
        P.Node(["EmbedLayerNormalization"], [P.Var("ids"), null, Table("tokens")], Ms, bindAs: "embed"),
        null,
        m =>
        {
            var node = m.Node("embed");
            Value? TableAt(int i) => node.Input(i) is { } t ? ConstantResolver.Resolve(t)?.Value : null;
            return new EmbeddingRole
            {
                Form = EmbeddingForm.EmbedLayerNormalization, Node = node, Nodes = [node], TokenTable = m["tokens"], PositionTable = TableAt(3),
                TokenTypeTable = TableAt(4), TokenIds = IndexSource(m["ids"]), Output = m.Root,
            };
        },
        allowEscapes: true);

    private static Check CheckTables(Match m)
    {
        foreach (var (table, indices) in Extras(m))
        {
            if (table == m["tokens"]) return Check.Fail($"the added lookup reads the token table '{table.Name}' again", table);
            if (ReferenceEquals(IndexSource(indices), IndexSource(m["ids"]))) return Check.Fail($"the added lookup of '{table.Name}' is indexed by the token ids too", indices);
        }
        return Check.Pass;
    }

    private static IEnumerable<(Value Table, Value Indices)> Extras(Match m)
    {
        if (m.TryValue("table1") is { } t1) yield return (t1, m["indices1"]);
        if (m.TryValue("table2") is { } t2) yield return (t2, m["indices2"]);
    }

    /// <summary>An added table indexed by a token-type (segment) input is the token-type table; any other is the
    /// learned position table.</summary>
    private static EmbeddingRole Build(Match m)
    {
        Value? positions = null, tokenTypes = null;
        foreach (var (table, indices) in Extras(m))
        {
            if (IndexSource(indices) is { IsGraphInput: true } input && NamedLike(input, "token_type", "segment")) tokenTypes ??= table;
            else positions ??= table;
        }
        return new EmbeddingRole
        {
            Form = positions is null ? EmbeddingForm.Gather : EmbeddingForm.GatherWithPositions, Node = m.Node("gather"), Nodes = m.Nodes,
            TokenTable = m["tokens"], PositionTable = positions, TokenTypeTable = tokenTypes, TokenIds = IndexSource(m["ids"]), Output = m.Root,
        };
    }
}
