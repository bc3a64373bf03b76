using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Common;

/// <summary>max |x| of named tensors of any layout over calibration windows: a fresh copy of the model held in memory gets one
/// ReduceMax(Abs(x)) over every axis per tensor as an extra output, and the windows are fed as calibration feeds them. For
/// tensors the probe points cannot take (the probes read [tokens, channels]; attention's Q, K^T and V are [B, H, S, D]).</summary>
public static class TensorAbsMax
{
    public const string PassName = "tensor-abs-max";

    public static IReadOnlyDictionary<string, double> Measure(string modelPath, IReadOnlyCollection<string> tensors, IReadOnlyList<int[]> windows, string? tokenInput = null)
    {
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        if (tensors.Count == 0) return result;
        using var model = ModelReader.Load(modelPath);
        var editor = model.Edit(origin: new NodeOrigin(PassName));
        var outputs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in tensors)
        {
            var value = model.Graph.FindValue(name) ?? throw new QuantizationInputException($"{modelPath}: has no tensor '{name}'");
            var abs = editor.Op("Abs", editor.Add("Cast", [value], [Attr.Int("to", (long)TensorDataType.Float)])[0]!);
            // No axes: every axis, in every opset.
            var max = editor.Add("ReduceMax", [abs], [Attr.Int("keepdims", 0)])[0]!;
            max.SetTensorType(TensorDataType.Float, []);
            model.Graph.AddOutput(max);
            outputs[name] = max.Name;
            result[name] = 0;
        }
        using var session = InMemoryModel.Open(model, new SessionSettings { Device = ExecutionDevice.Cpu });
        var plan = FeedPlan.Create(modelPath, session.Inputs, session.OutputNames, tokenInput);
        if (plan.StepMode) throw new QuantizationInputException($"{modelPath}: a one-token step model cannot be calibrated for attention ranges; use a prompt model");
        foreach (var window in windows.Where(w => w.Length > 0))
        {
            var fetched = session.Run(plan.Build(1, window.Length, window, 0, null), outputs.Values);
            foreach (var (name, output) in outputs)
            {
                float v = fetched.Single(t => t.Name == output).AsSpan<float>()[0];
                if (float.IsFinite(v) && v > result[name]) result[name] = v;
            }
        }
        return result;
    }
}
