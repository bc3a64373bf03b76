using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>
/// A committed planted model run on ONNX Runtime with the tensors its ground truth is stated on made graph
/// outputs (found by the structure recognizer's roles, not by name): each block's output, its down-projection
/// input and FFN-norm output, and for attention the decomposed Softmax output or, for GroupQueryAttention, the
/// rotated q and k it reads (the probabilities are then computed here from them). The copy lives in a temp folder.
/// </summary>
internal sealed class PlantedOrtProbe : IDisposable
{
    private readonly ModelSession _session;
    private readonly DecoderConfig _config;
    private readonly bool _genai;

    public PlantedOrtProbe(string modelPath, TempFolder temp, DecoderConfig config)
    {
        _config = config;
        using var model = ModelReader.Load(modelPath);
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException($"{modelPath}: structure not recognized");
        Assert.Equal(config.Layers, structure.Blocks.Count);
        var graph = structure.Graph;
        for (int l = 0; l < config.Layers; l++)
        {
            var block = structure.Blocks[l];
            Expose(graph, Resolve(model, block.ResidualOut), $"block{l}.out");
            Expose(graph, block.Ffn!.DownInput, $"block{l}.down_in");
            Expose(graph, block.FfnNorm!.Output, $"block{l}.ffn_norm_out");
            var attention = block.Attention!;
            if (attention.Probabilities is { } probs) Expose(graph, probs, $"block{l}.probs");
            else
            {
                var core = attention.CoreNodes.Single(n => n.OpType == "GroupQueryAttention");
                _genai = true;
                Expose(graph, core.Inputs[0]!, $"block{l}.q");
                Expose(graph, core.Inputs[1]!, $"block{l}.k");
            }
        }
        string dir = temp.Folder(Path.GetFileName(Path.GetDirectoryName(modelPath))!);
        string copy = Path.Combine(dir, "model.onnx");
        ModelWriter.Save(model, copy, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        _session = SessionFactory.Open(copy, SessionSettings.CpuUnoptimized);
    }

    private readonly Dictionary<string, string> _names = [];

    private static Value Resolve(Model model, OnnxOutlierTools.Structure.Roles.TensorRef reference) =>
        reference.Value ?? reference.Node!.EnsureOutput(reference.OutputIndex, model.Names, "residual_sum");

    private void Expose(Graph graph, Value value, string key)
    {
        if (value.Type is null) value.SetTensorType(TensorDataType.Float, null);
        if (!value.IsGraphOutput) graph.AddOutput(value);
        _names[key] = value.Name;
    }

    /// <summary>Runs a batch of equal-length windows; returns logits and every exposed tensor as
    /// [window][position][feature] (probabilities: [window][head][query][key]).</summary>
    public ProbeRun Run(IReadOnlyList<int[]> windows)
    {
        int b = windows.Count, s = windows[0].Length;
        var feeds = new List<TensorData>();
        var ids = windows.SelectMany(w => w.Select(t => (long)t)).ToArray();
        foreach (var input in _session.Inputs)
        {
            string name = input.Name;
            if (name == "input_ids") feeds.Add(TensorData.Create(name, ids, b, s));
            else if (name == "attention_mask") feeds.Add(TensorData.Create(name, Enumerable.Repeat(1L, b * s).ToArray(), b, s));
            else if (name == "position_ids") feeds.Add(TensorData.Create(name, Enumerable.Range(0, b * s).Select(i => (long)(i % s)).ToArray(), b, s));
            else if (name.StartsWith("past_key_values.", StringComparison.Ordinal))
                feeds.Add(TensorData.Create(name, Array.Empty<float>(), b, _config.KvHeads, 0, _config.HeadSize));
            else throw new InvalidOperationException($"unexpected input {name}");
        }
        var keys = _names.Keys.ToList();
        var outputs = _session.Run(feeds, ["logits", .. keys.Select(k => _names[k])]);
        var result = new ProbeRun { Logits = Split(outputs[0].ToSingleArray(), b, s) };
        for (int i = 0; i < keys.Count; i++) result.Tensors[keys[i]] = outputs[i + 1].ToSingleArray();
        result.Batch = b;
        result.Length = s;
        if (_genai)
            for (int l = 0; l < _config.Layers; l++)
                result.Probabilities[l] = GqaProbabilities(result.Tensors[$"block{l}.q"], result.Tensors[$"block{l}.k"], b, s);
        else
            for (int l = 0; l < _config.Layers; l++)
            {
                var p = result.Tensors[$"block{l}.probs"]; // [b, heads, s, s]
                var perWindow = new double[b][][][];
                for (int w = 0; w < b; w++)
                {
                    perWindow[w] = new double[_config.Heads][][];
                    for (int h = 0; h < _config.Heads; h++)
                    {
                        perWindow[w][h] = new double[s][];
                        for (int t = 0; t < s; t++)
                            perWindow[w][h][t] = Enumerable.Range(0, t + 1).Select(k => (double)p[(((long)w * _config.Heads + h) * s + t) * s + k]).ToArray();
                    }
                }
                result.Probabilities[l] = perWindow;
            }
        return result;
    }

    // softmax(q k^T / sqrt(hs)) per head, causal, from GroupQueryAttention's rotated q [b, s, heads*hs] and k [b, s, kv*hs].
    private double[][][][] GqaProbabilities(float[] q, float[] k, int b, int s)
    {
        int hs = _config.HeadSize, heads = _config.Heads, kv = _config.KvHeads;
        var result = new double[b][][][];
        for (int w = 0; w < b; w++)
        {
            result[w] = new double[heads][][];
            for (int h = 0; h < heads; h++)
            {
                result[w][h] = new double[s][];
                int kh = h / (heads / kv);
                for (int t = 0; t < s; t++)
                {
                    var scores = new double[t + 1];
                    for (int u = 0; u <= t; u++)
                    {
                        double dot = 0;
                        for (int i = 0; i < hs; i++)
                            dot += (double)q[((long)w * s + t) * heads * hs + h * hs + i] * k[((long)w * s + u) * kv * hs + kh * hs + i];
                        scores[u] = dot / Math.Sqrt(hs);
                    }
                    double max = scores.Max(), sum = 0;
                    for (int u = 0; u <= t; u++) sum += scores[u] = Math.Exp(scores[u] - max);
                    for (int u = 0; u <= t; u++) scores[u] /= sum;
                    result[w][h][t] = scores;
                }
            }
        }
        return result;
    }

    private static double[][][] Split(float[] flat, int b, int s)
    {
        int width = flat.Length / (b * s);
        return Enumerable.Range(0, b).Select(w => Enumerable.Range(0, s)
            .Select(t => Enumerable.Range(0, width).Select(j => (double)flat[((long)w * s + t) * width + j]).ToArray()).ToArray()).ToArray();
    }

    public void Dispose() => _session.Dispose();

    public sealed class ProbeRun
    {
        public required double[][][] Logits { get; init; }
        public Dictionary<string, float[]> Tensors { get; } = [];
        public Dictionary<int, double[][][][]> Probabilities { get; } = [];
        public int Batch { get; set; }
        public int Length { get; set; }

        /// <summary>Row [window, position] of an exposed [b, s, width] tensor.</summary>
        public double[] Row(string key, int window, int position)
        {
            var flat = Tensors[key];
            int width = flat.Length / (Batch * Length);
            return Enumerable.Range(0, width).Select(j => (double)flat[((long)window * Length + position) * width + j]).ToArray();
        }
    }
}
