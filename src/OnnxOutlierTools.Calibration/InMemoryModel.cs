using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Calibration;

/// <summary>Opens an ONNX Runtime session on an edited model (a probed one) without writing it anywhere: the protobuf is
/// serialized to memory, and every tensor still read from the original external data file keeps pointing there (same
/// location and offset, resolved in the original model's folder), so the weights are neither copied nor rewritten.
/// New tensors (the probes' constants) are embedded.</summary>
public static class InMemoryModel
{
    public static ModelSession Open(Model model, SessionSettings? settings = null)
    {
        string display = model.SourcePath ?? model.Graph.Name;
        if (model.MissingExternalFiles.Count > 0)
        {
            var (file, reason) = model.MissingExternalFiles.First();
            throw new RuntimeSetupException($"{display}: external data '{file}' is unusable ({reason}); running the model needs its weights");
        }
        string? folder = model.SourcePath is null ? null : Path.GetDirectoryName(Path.GetFullPath(model.SourcePath));
        var bytes = Serialize(model);
        return SessionFactory.OpenInMemory(bytes, display, folder, settings);
    }

    public static byte[] Serialize(Model model)
    {
        using var stream = new MemoryStream();
        ModelSerializer.Write(model, stream, Placement);
        return stream.ToArray();
    }

    private static TensorProtoPlacement Placement(Value initializer) => initializer.ConstValue switch
    {
        MappedTensor mapped => TensorProtoPlacement.External(ExternalDataReference.Parse(mapped.Source).Location, mapped.Offset),
        MissingExternalTensor missing => throw new RuntimeSetupException($"initializer '{initializer.Name}': external data '{missing.Location}' is unusable ({missing.Reason})"),
        _ => TensorProtoPlacement.Embedded,
    };
}
