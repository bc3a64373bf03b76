using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>Raises a model's default (ai.onnx) opset to 21, which the INT4 blocked DequantizeLinear needs, only when every node
/// (nested graphs included) means the same at 21. From opset 13 on, the ops whose definition changed on the way are converted:
/// ReduceMax/Min/Mean/Prod/L1/L2/LogSum/LogSumExp/SumSquare take their axes as an input from 18 (the attribute becomes an int64
/// initializer), Split without a split input needs num_outputs from 18, RoiAlign keeps its old output_half_pixel default explicitly
/// (16 changed the default), GridSample's modes are renamed at 20
/// (bilinear -> linear, bicubic -> cubic). Refused with one line naming the op: a model below opset 13 (Softmax, Squeeze,
/// ReduceSum and more changed meaning at 13), GroupNormalization (its scale and bias became per channel at 21) and DFT (its
/// axis became an input at 20). The IR version is raised to 10 (opset 21 needs it).</summary>
public static class Opset21Upgrade
{
    public const long Target = 21;

    private static readonly HashSet<string> ReduceWithAxesInputAt18 =
        ["ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"];

    /// <summary>Lines saying what was converted (empty when the model already was at 21 or above).</summary>
    /// <exception cref="Int4QuantizationException">An op whose meaning changed and that is not converted.</exception>
    public static IReadOnlyList<string> Apply(Model model, string display)
    {
        ArgumentNullException.ThrowIfNull(model);
        long current = model.OpsetVersion("") ?? 1;
        if (current >= Target) return [];
        if (current < 13)
            throw new Int4QuantizationException($"{display}: default opset {current} is below 13; the opset-21 int4 form needs 21 and ops such as Softmax changed meaning at 13 (re-export at opset 13 or newer, or use MatMulNBits)");
        var nodes = model.Graph.AllNodes().Where(n => n.IsDefaultDomain).ToList();
        foreach (var node in nodes)
        {
            if (node.OpType == "GroupNormalization")
                throw new Int4QuantizationException($"{display}: {node.Describe()} changed meaning at opset 21 (per-channel scale and bias); cannot raise opset {current} to 21");
            if (node.OpType == "DFT" && current < 20)
                throw new Int4QuantizationException($"{display}: {node.Describe()} takes its axis as an input from opset 20; cannot raise opset {current} to 21");
        }
        var lines = new List<string>();
        int reduces = 0, splits = 0, grids = 0, rois = 0;
        foreach (var node in nodes)
        {
            if (current < 18 && ReduceWithAxesInputAt18.Contains(node.OpType) && node.GetAttribute("axes") is { } axes)
            {
                var values = axes.AsInts().ToArray();
                var graph = node.Graph!;
                var initializer = graph.AddInitializer(model.Names.NewValueName($"{(node.Name.Length > 0 ? node.Name : node.OpType)}.axes"),
                    ArrayTensor.Create<long>(values, values.Length));
                if (node.Inputs.Count < 1) throw new Int4QuantizationException($"{display}: {node.Describe()} has no data input");
                while (node.Inputs.Count < 2) node.AppendInput(null);
                node.ReplaceInput(1, initializer);
                node.RemoveAttribute("axes");
                reduces++;
            }
            else if (current < 18 && node.OpType == "Split" && node.Input(1) is null && node.GetAttribute("split") is null && node.GetAttribute("num_outputs") is null)
            {
                node.SetAttribute(Attr.Int("num_outputs", node.Outputs.Count));
                splits++;
            }
            else if (current < 16 && node.OpType == "RoiAlign" && node.GetAttribute("coordinate_transformation_mode") is null)
            {
                // RoiAlign-16 added the attribute with default half_pixel; the older op computed output_half_pixel.
                node.SetAttribute(Attr.String("coordinate_transformation_mode", "output_half_pixel"));
                rois++;
            }
            else if (current < 20 && node.OpType == "GridSample" && node.GetString("mode") is { } mode && mode is "bilinear" or "bicubic")
            {
                node.SetAttribute(Attr.String("mode", mode == "bilinear" ? "linear" : "cubic"));
                grids++;
            }
        }
        if (reduces > 0) lines.Add($"{reduces} Reduce node(s): axes attribute -> input (opset 18)");
        if (splits > 0) lines.Add($"{splits} Split node(s): num_outputs set (opset 18)");
        if (rois > 0) lines.Add($"{rois} RoiAlign node(s): coordinate_transformation_mode output_half_pixel kept (opset 16)");
        if (grids > 0) lines.Add($"{grids} GridSample node(s): mode renamed (opset 20)");
        int index = model.OpsetImports.FindIndex(o => o.Domain is "" or "ai.onnx");
        if (index < 0) model.OpsetImports.Add(new OpsetId("", Target));
        else model.OpsetImports[index] = model.OpsetImports[index] with { Version = Target };
        if (model.IrVersion < 10) model.IrVersion = 10;
        lines.Insert(0, $"default opset {current} -> {Target}");
        return lines;
    }
}
