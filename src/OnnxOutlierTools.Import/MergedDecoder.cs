using Onnx.Protobuf;
using OnnxOutlierTools.Import.Onnx;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Import;

/// <summary>An Optimum-style merged decoder: one graph whose <c>If</c> on the bool input <c>use_cache_branch</c> runs the
/// decoder with past (then branch) or without past (else branch). Both branches are the generator's decomposed flavours
/// (the no-cache one also emits its keys and values as presents); the initializers equal in both are moved to the outer
/// graph and read by both branches from there (as Optimum's merge does), the rest stays in its branch. Inputs: those of the
/// with-past decoder plus <c>use_cache_branch</c> [1]; outputs: <c>logits</c> and <c>present.{i}.key/value</c>. With
/// use_cache_branch false the past inputs are ignored (feed an empty past).</summary>
public static class MergedDecoder
{
    public const string UseCacheBranch = "use_cache_branch";

    public static Model Build(DecoderWeights weights, DecoderVariants? variants = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        variants ??= new DecoderVariants();
        var source = new DecoderWeightSource(weights, Tensors.TensorDataType.Float);
        var withPast = ToProto(LlamaOnnxBuilder.Decomposed(weights.Config, source, withPast: true, variants));
        var noPast = ToProto(LlamaOnnxBuilder.Decomposed(weights.Config, source, withPast: false, variants, presentsWithoutPast: true));
        return ModelReader.FromProto(Merge(withPast, noPast), "merged_decoder.onnx");
    }

    private static ModelProto ToProto(Model model)
    {
        string dir = Directory.CreateTempSubdirectory("merged-decoder").FullName;
        try
        {
            string path = Path.Combine(dir, "branch.onnx");
            using (model) ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
            return ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    internal static ModelProto Merge(ModelProto withPast, ModelProto noPast)
    {
        var outer = new GraphProto { Name = "main_graph" };
        outer.Input.AddRange(withPast.Graph.Input);
        outer.Input.Add(new ValueInfoProto
        {
            Name = UseCacheBranch,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Bool, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimValue = 1 } } } } },
        });
        var noPastInits = noPast.Graph.Initializer.ToDictionary(t => t.Name);
        var shared = withPast.Graph.Initializer.Where(t => noPastInits.TryGetValue(t.Name, out var o) && o.Equals(t)).Select(t => t.Name).ToHashSet();
        outer.Initializer.AddRange(withPast.Graph.Initializer.Where(t => shared.Contains(t.Name)));

        var outputs = withPast.Graph.Output.Select(o => o.Name).ToList();
        GraphProto Branch(GraphProto g, string name, string suffix)
        {
            // Branch outputs get their own names: the If's outputs carry the plain ones in the outer graph.
            var rename = outputs.ToDictionary(o => o, o => $"{o}_{suffix}");
            var branch = new GraphProto { Name = name };
            foreach (var n in g.Node)
            {
                var copy = n.Clone();
                for (int i = 0; i < copy.Input.Count; i++) if (rename.TryGetValue(copy.Input[i], out var r)) copy.Input[i] = r;
                for (int i = 0; i < copy.Output.Count; i++) if (rename.TryGetValue(copy.Output[i], out var r)) copy.Output[i] = r;
                branch.Node.Add(copy);
            }
            branch.Initializer.AddRange(g.Initializer.Where(t => !shared.Contains(t.Name)));
            foreach (var o in outputs)
            {
                var info = g.Output.First(x => x.Name == o).Clone();
                info.Name = rename[o];
                branch.Output.Add(info);
            }
            return branch;
        }
        var node = new NodeProto { Name = "optimum::if", OpType = "If", Input = { UseCacheBranch } };
        node.Output.AddRange(outputs);
        node.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch(withPast.Graph, "decoder_with_past", "with_past") });
        node.Attribute.Add(new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch(noPast.Graph, "decoder", "no_past") });
        outer.Node.Add(node);
        outer.Output.AddRange(withPast.Graph.Output);

        var model = new ModelProto { IrVersion = withPast.IrVersion, ProducerName = LlamaOnnxBuilder.ProducerName, ProducerVersion = "1", Graph = outer };
        model.OpsetImport.AddRange(withPast.OpsetImport);
        model.MetadataProps.Add(new StringStringEntryProto { Key = "onnx_outlier_tools.flavour", Value = "MergedDecoder" });
        return model;
    }
}
