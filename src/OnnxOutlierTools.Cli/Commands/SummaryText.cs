using System.Globalization;
using System.Text;
using OnnxOutlierTools.Inspection;
using static OnnxOutlierTools.Text.Printable;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary>The human-readable form of a <see cref="ModelSummary"/>. Every string taken from the file (or the
/// path the user typed) goes through <see cref="OnnxOutlierTools.Text.Printable.Escape"/>: a newline in an input
/// name must not be able to print a line of its own, such as a forged <c>ir: 999</c>.</summary>
public static class SummaryText
{
    public static string Render(ModelSummary s, string displayPath)
    {
        var sb = new StringBuilder();
        string size = s.FileBytes is long b ? $" ({N(b)} bytes)" : "";
        Line(sb, $"model:     {Escape(displayPath)}{size}");
        string producer = string.Join(" ", new[] { s.ProducerName, s.ProducerVersion }.Where(x => !string.IsNullOrEmpty(x)).Select(Escape));
        Line(sb, $"producer:  {(producer.Length > 0 ? producer : "(none)")}");
        Line(sb, $"ir:        {s.IrVersion}");
        Line(sb, $"opsets:    {(s.OpsetImports.Count > 0 ? string.Join(", ", s.OpsetImports.Select(o => $"{Escape(o.Domain)} {o.Version}")) : "(none)")}");

        ValueTable(sb, "inputs", s.Inputs);
        ValueTable(sb, "outputs", s.Outputs);

        sb.AppendLine();
        Line(sb, s.Nodes.Nested > 0
            ? $"nodes: {N(s.Nodes.Total)} ({N(s.Nodes.MainGraph)} in the main graph, {N(s.Nodes.Nested)} in nested graphs)"
            : $"nodes: {N(s.Nodes.Total)}");
        Line(sb, $"op types ({s.OpTypes.Count}):");
        // Escaped before measuring, so the columns line up with what is printed.
        var opTypes = s.OpTypes.Select(p => (Key: Escape(p.Key), Op: p.Value)).ToList();
        int keyWidth = opTypes.Select(p => p.Key).DefaultIfEmpty("").Max(k => k.Length);
        bool anyNested = s.OpTypes.Values.Any(o => o.NestedCount > 0);
        if (anyNested) Line(sb, $"  {"".PadRight(keyWidth)}  {"main",7}  {"nested",7}");
        foreach (var (key, op) in opTypes)
            Line(sb, anyNested ? $"  {key.PadRight(keyWidth)}  {N(op.Count),7}  {N(op.NestedCount),7}" : $"  {key.PadRight(keyWidth)}  {N(op.Count),7}");

        if (s.NestedGraphs.Count > 0)
        {
            Line(sb, $"nested graphs ({s.NestedGraphs.Count}):");
            foreach (var g in s.NestedGraphs)
            {
                string index = g.Index is int i ? $"[{i}]" : "";
                string indent = new(' ', 2 * g.Depth);
                Line(sb, $"{indent}{Escape(g.Owner)} attribute '{Escape(g.Attribute)}{index}' (graph '{Escape(g.GraphName)}'): {N(g.NodeCount)} nodes, {N(g.InitializerCount)} initializers");
            }
        }

        sb.AppendLine();
        var init = s.Initializers;
        string nestedInit = init.NestedCount > 0 ? $" (+{N(init.NestedCount)} in nested graphs)" : "";
        Line(sb, $"initializers: {N(init.Count)}{nestedInit}, {N(init.ParameterCount)} parameters, {N(init.Bytes)} bytes");
        if (init.ByDataType.Count > 0)
        {
            int typeWidth = init.ByDataType.Keys.Max(k => Escape(k).Length);
            int countWidth = init.ByDataType.Values.Max(t => N(t.TensorCount).Length);
            int paramWidth = init.ByDataType.Values.Max(t => N(t.ParameterCount).Length);
            int bytesWidth = init.ByDataType.Values.Max(t => N(t.Bytes).Length);
            foreach (var (type, t) in init.ByDataType)
                Line(sb, $"  {Escape(type).PadRight(typeWidth)}  {N(t.TensorCount).PadLeft(countWidth)} tensors  " +
                    $"{N(t.ParameterCount).PadLeft(paramWidth)} parameters  {N(t.Bytes).PadLeft(bytesWidth)} bytes");
        }

        sb.AppendLine();

        if (s.ExternalData.Count == 0)
        {
            Line(sb, "external data: none");
        }
        else
        {
            Line(sb, $"external data ({s.ExternalData.Count}):");
            foreach (var f in s.ExternalData)
            {
                string location = Escape(f.Location), reason = Escape(f.Reason);
                string tensors = $"{N(f.TensorCount)} tensor{(f.TensorCount == 1 ? "" : "s")}";
                if (!f.Present)
                    Line(sb, $"  {location}  ABSENT ({reason}): data of {tensors} ({N(f.RequiredBytes)} bytes) unavailable");
                else if (f.Reason is not null)
                    Line(sb, $"  {location}  {N(f.Bytes ?? 0)} bytes, {tensors}  UNUSABLE ({reason})");
                else
                    Line(sb, $"  {location}  {N(f.Bytes ?? 0)} bytes, {tensors}");
            }
        }
        if (s.Folder is { } folder) FolderLines(sb, folder);
        return sb.ToString();
    }

    /// <summary>"folder: config.json (llama: 24 layers, hidden 1024; bos 1, eos 2), tokenizer.json".</summary>
    private static void FolderLines(StringBuilder sb, OnnxOutlierTools.IO.ModelFolderFacts folder)
    {
        var parts = new List<string>();
        foreach (var c in new[] { folder.GenAiConfig, folder.HfConfig })
        {
            if (c is null) continue;
            if (c.Problem is not null) { parts.Add($"{c.File} UNUSABLE ({Escape(c.Problem)})"); continue; }
            var sizes = new List<string>();
            if (c.LayerCount is int l) sizes.Add($"{N(l)} layers");
            if (c.HiddenSize is int h) sizes.Add($"hidden {N(h)}");
            if (c.VocabularySize is int v) sizes.Add($"vocab {N(v)}");
            var ids = new List<string>();
            if (c.BosTokenId is int bos) ids.Add($"bos {bos}");
            if (c.EosTokenIds.Count > 0) ids.Add($"eos {string.Join("/", c.EosTokenIds)}");
            string type = c.ModelType is { } t ? Escape(t) + (sizes.Count > 0 ? ": " : "") : "";
            string detail = string.Join("; ", new[] { type + string.Join(", ", sizes), string.Join(", ", ids) }.Where(x => x.Length > 0));
            parts.Add(detail.Length > 0 ? $"{c.File} ({detail})" : c.File);
        }
        parts.AddRange(folder.TokenizerFiles);
        sb.AppendLine();
        Line(sb, parts.Count > 0 ? $"folder: {string.Join(", ", parts)}" : "folder: no config.json, genai_config.json or tokenizer files");
    }

    private static void ValueTable(StringBuilder sb, string title, IReadOnlyList<ValueSummary> values)
    {
        sb.AppendLine();
        Line(sb, $"{title} ({values.Count}):");
        if (values.Count == 0) return;
        var rows = values.Select(v => (Name: Escape(v.Name), Type: Escape(TypeText(v)),
            Shape: v.Kind is "tensor" or "sparseTensor" ? Escape(v.ShapeText) : "")).ToList();
        int nameWidth = rows.Max(r => r.Name.Length);
        int typeWidth = rows.Max(r => r.Type.Length);
        foreach (var r in rows)
            Line(sb, $"  {r.Name.PadRight(nameWidth)}  {r.Type.PadRight(typeWidth)}  {r.Shape}".TrimEnd());
    }

    private static string TypeText(ValueSummary v) => v.Kind switch
    {
        "tensor" => v.ElementType ?? "?",
        "sparseTensor" => $"sparse {v.ElementType ?? "?"}",
        _ => v.Kind,
    };

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
    private static string N(Int128 value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static void Line(StringBuilder sb, string text) => sb.Append(text).Append('\n');
}
