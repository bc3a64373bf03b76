using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>Runs the prefix tokens alone through the ORIGINAL model on ONNX Runtime and takes each attention layer's
/// post-rotary keys and values of those positions (SCIENCE.md 2.3): in a causal decoder they do not depend on any later
/// token, so they are the same whatever text follows. KV-cache models give them as their <c>present.*</c> outputs (empty
/// past; the other inputs fed by <see cref="FeedPlan"/>); decomposed attention without a cache gives them as the score
/// MatMul's K^T and the context MatMul's V, marked as extra outputs of the serialized copy only (the model is left as it
/// was).</summary>
public static class SinkCapture
{
    public static CapturedSink Capture(Model model, ModelStructure structure, SinkPrefix prefix, SessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(prefix);
        string name = model.SourcePath ?? model.Graph.Name;
        if (!ReferenceEquals(structure.Graph, model.Graph))
            throw new SinkBiasException($"{name}: the structure was recognized on another graph than the model's main graph");
        var plan = SinkSites.Find(structure, name);
        settings ??= SessionSettings.CpuUnoptimized;

        var wanted = plan.Sites.SelectMany(s => new[] { s.CapturedKey, s.CapturedValue }).ToList();
        var graph = model.Graph;
        int outputsBefore = graph.Outputs.Count;
        // Inline sites are intermediate tensors: expose them on the serialized copy, then restore the outputs at once.
        foreach (var value in wanted.Where(v => !graph.Outputs.Contains(v)).Distinct()) graph.AddOutput(value);
        ModelSession session;
        try
        {
            session = InMemoryModel.Open(model, settings);
        }
        finally
        {
            while (graph.Outputs.Count > outputsBefore) graph.RemoveOutput(graph.Outputs.Count - 1);
        }

        using (session)
        {
            FeedPlan feeds;
            try
            {
                feeds = FeedPlan.Create(name, session.Inputs, session.OutputNames, structure.Inputs.InputIds?.Name);
            }
            catch (CalibrationException e)
            {
                throw new SinkBiasException(e.Message, e);
            }
            if (feeds.StepMode && prefix.Length > 1)
                throw new SinkBiasException($"{name}: a one-token step model cannot take a {prefix.Length}-token prefix in one run");
            var ids = prefix.TokenIds.ToArray();
            var outputs = session.Run(feeds.Build(1, ids.Length, ids, 0, null), wanted.Select(v => v.Name));
            var layers = new List<CapturedLayer>();
            for (int i = 0; i < plan.Sites.Count; i++)
            {
                var site = plan.Sites[i];
                var key = outputs[2 * i].Tensor;
                var value = outputs[2 * i + 1].Tensor;
                CheckLength(name, site, key, keyAxis: plan.Form == SinkForm.Cache ? 2 : 3, prefix.Length);
                CheckLength(name, site, value, keyAxis: 2, prefix.Length);
                layers.Add(new CapturedLayer(site.Block, key, value));
            }
            return new CapturedSink(plan, prefix, layers);
        }
    }

    private static void CheckLength(string name, SinkSite site, Tensors.ArrayTensor tensor, int keyAxis, int length)
    {
        if (tensor.Dims.Count != 4 || tensor.Dims[0] != 1 || tensor.Dims[keyAxis] != length)
            throw new SinkBiasException($"{name}: block {site.Block}: captured '{(site.PresentKey ?? site.Key).Name}' has shape [{string.Join(",", tensor.Dims)}], " +
                $"expected rank 4, batch 1 and {length} prefix positions on axis {keyAxis}");
    }
}
