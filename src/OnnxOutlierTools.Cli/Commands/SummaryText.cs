using System.Globalization;
using System.Text;
using OnnxOutlierTools.Inspection;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary>The human-readable form of a <see cref="ModelSummary"/>.</summary>
public static class SummaryText
{
    public static string Render(ModelSummary s, string displayPath)
    {
        var sb = new StringBuilder();
        string size = s.FileBytes is long b ? $" ({N(b)} bytes)" : "";
        Line(sb, $"model:     {displayPath}{size}");
        string producer = string.Join(" ", new[] { s.ProducerName, s.ProducerVersion }.Where(x => !string.IsNullOrEmpty(x)));
        Line(sb, $"producer:  {(producer.Length > 0 ? producer : "(none)")}");
        Line(sb, $"ir:        {s.IrVersion}");
        Line(sb, $"opsets:    {(s.OpsetImports.Count > 0 ? string.Join(", ", s.OpsetImports.Select(o => $"{o.Domain} {o.Version}")) : "(none)")}");

        ValueTable(sb, "inputs", s.Inputs);
        ValueTable(sb, "outputs", s.Outputs);

        sb.AppendLine();
        Line(sb, s.Nodes.Nested > 0
            ? $"nodes: {N(s.Nodes.Total)} ({N(s.Nodes.MainGraph)} in the main graph, {N(s.Nodes.Nested)} in nested graphs)"
            : $"nodes: {N(s.Nodes.Total)}");
        Line(sb, $"op types ({s.OpTypes.Count}):");
        int keyWidth = s.OpTypes.Keys.DefaultIfEmpty("").Max(k => k.Length);
        bool anyNested = s.OpTypes.Values.Any(o => o.NestedCount > 0);
        if (anyNested) Line(sb, $"  {"".PadRight(keyWidth)}  {"main",7}  {"nested",7}");
        foreach (var (key, op) in s.OpTypes)
            Line(sb, anyNested ? $"  {key.PadRight(keyWidth)}  {N(op.Count),7}  {N(op.NestedCount),7}" : $"  {key.PadRight(keyWidth)}  {N(op.Count),7}");

        if (s.NestedGraphs.Count > 0)
        {
            Line(sb, $"nested graphs ({s.NestedGraphs.Count}):");
            foreach (var g in s.NestedGraphs)
            {
                string index = g.Index is int i ? $"[{i}]" : "";
                string indent = new(' ', 2 * g.Depth);
                Line(sb, $"{indent}{g.Owner} attribute '{g.Attribute}{index}' (graph '{g.GraphName}'): {N(g.NodeCount)} nodes, {N(g.InitializerCount)} initializers");
            }
        }

        sb.AppendLine();
        var init = s.Initializers;
        string nestedInit = init.NestedCount > 0 ? $" (+{N(init.NestedCount)} in nested graphs)" : "";
        Line(sb, $"initializers: {N(init.Count)}{nestedInit}, {N(init.ParameterCount)} parameters, {N(init.Bytes)} bytes");
        if (init.ByDataType.Count > 0)
        {
            int typeWidth = init.ByDataType.Keys.Max(k => k.Length);
            int countWidth = init.ByDataType.Values.Max(t => N(t.TensorCount).Length);
            int paramWidth = init.ByDataType.Values.Max(t => N(t.ParameterCount).Length);
            int bytesWidth = init.ByDataType.Values.Max(t => N(t.Bytes).Length);
            foreach (var (type, t) in init.ByDataType)
                Line(sb, $"  {type.PadRight(typeWidth)}  {N(t.TensorCount).PadLeft(countWidth)} tensors  " +
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
                string tensors = $"{N(f.TensorCount)} tensor{(f.TensorCount == 1 ? "" : "s")}";
                if (!f.Present)
                    Line(sb, $"  {f.Location}  ABSENT ({f.Reason}): data of {tensors} ({N(f.RequiredBytes)} bytes) unavailable");
                else if (f.Reason is not null)
                    Line(sb, $"  {f.Location}  {N(f.Bytes ?? 0)} bytes, {tensors}  UNUSABLE ({f.Reason})");
                else
                    Line(sb, $"  {f.Location}  {N(f.Bytes ?? 0)} bytes, {tensors}");
            }
        }
        return sb.ToString();
    }

    private static void ValueTable(StringBuilder sb, string title, IReadOnlyList<ValueSummary> values)
    {
        sb.AppendLine();
        Line(sb, $"{title} ({values.Count}):");
        if (values.Count == 0) return;
        int nameWidth = values.Max(v => v.Name.Length);
        int typeWidth = values.Max(v => TypeText(v).Length);
        foreach (var v in values)
            Line(sb, $"  {v.Name.PadRight(nameWidth)}  {TypeText(v).PadRight(typeWidth)}  {(v.Kind is "tensor" or "sparseTensor" ? v.ShapeText : "")}".TrimEnd());
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
